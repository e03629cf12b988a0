// Command mkimage writes the local busybox test image as an OCI/docker-archive
// tar, for `make run` and benchmarks on machines without a registry:
//
//	go run ./tools/mkimage -o busybox.tar
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/vigil-run/vigil/internal/testimage"
)

func main() {
	out := flag.String("o", "busybox.tar", "output tar file")
	busybox := flag.String("busybox", testimage.DefaultBusybox, "statically linked busybox to put in the image")
	ref := flag.String("ref", testimage.Ref, "image reference to import the image as")
	flag.Parse()
	if err := testimage.WriteFile(*out, testimage.Options{Busybox: *busybox, Ref: *ref}); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
	fmt.Println(*ref, "->", *out)
}
