// Command cluster runs Vigil's production path on this machine (package
// internal/cluster): PostgreSQL, the Temporal server as four processes, its
// Web UI and two Vigil nodes. `make cluster` and `make cluster-stop` call it.
//
//	go run ./tools/cluster build                 build the Temporal binaries (once; minutes)
//	go run ./tools/cluster start [--dir D]       build if needed, start what is not running, print the addresses
//	go run ./tools/cluster stop  [--dir D]       stop everything (state stays in D)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/vigil-run/vigil/internal/cluster"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	dir := fs.String("dir", ".vigil/cluster", "state directory (PostgreSQL data, containerd roots, logs)")
	worker := fs.String("worker", "bin/vigil-worker", "the vigil-worker binary the nodes run")
	_ = fs.Parse(os.Args[2:])

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1], *dir, *worker); err != nil {
		fmt.Fprintf(os.Stderr, "cluster: %v\n", err)
		os.Exit(1)
	}
}

// namespace is the containerd namespace of make cluster's nodes, apart from
// make run's "vigil" so the two can run side by side.
const namespace = "vigil-cluster"

func usage() {
	fmt.Fprintln(os.Stderr, "usage: cluster build|start|stop [--dir DIR] [--worker BIN]")
	os.Exit(2)
}

func run(ctx context.Context, command, dir, worker string) error {
	repo, err := os.Getwd()
	if err != nil {
		return err
	}
	v, err := cluster.ReadVersions(repo)
	if err != nil {
		return err
	}
	switch command {
	case "build":
		_, err := cluster.Build(ctx, repo, v, os.Stdout)
		return err
	case "start":
		if _, err := cluster.Build(ctx, repo, v, os.Stdout); err != nil {
			return err
		}
		if worker, err = filepath.Abs(worker); err != nil {
			return err
		}
		c, err := cluster.New(cluster.Options{Repo: repo, Dir: dir,
			VigilWorker: worker, Namespace: namespace, Detach: true, Log: os.Stdout})
		if err != nil {
			return err
		}
		began := time.Now()
		if err := c.Start(ctx); err != nil {
			return fmt.Errorf("%w\n(`make cluster-stop` stops what did start; logs are in %s)", err, filepath.Join(c.Dir, "logs"))
		}
		fmt.Printf(`
Cluster ready in %s:
  Temporal frontend  %s   (TEMPORAL_ADDRESS=%s bin/vigil list)
  Temporal Web UI    %s
  PostgreSQL         %s   (user temporal, password in %s)
  nodes              %v   (containerd namespace %s; logs in %s)
Stop it: make cluster-stop (state stays in %s)
`, time.Since(began).Round(100*time.Millisecond), c.Address(), c.Address(), c.UIAddress(), c.PostgresAddress(),
			filepath.Join(c.Dir, "postgres.password"), c.Nodes, c.Namespace, filepath.Join(c.Dir, "logs"), c.Dir)
		return nil
	case "stop":
		c, err := cluster.New(cluster.Options{Repo: repo, Dir: dir, Namespace: namespace, Log: os.Stdout})
		if errors.Is(err, cluster.ErrNotBuilt) {
			return nil // never built, so never started
		}
		if err != nil {
			return err
		}
		if err := c.Stop(ctx); err != nil {
			return err
		}
		fmt.Printf("cluster stopped (state stays in %s)\n", c.Dir)
		return nil
	}
	usage()
	return nil
}
