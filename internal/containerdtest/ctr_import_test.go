package containerdtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-run/vigil/internal/testimage"
)

// `make image` imports the mkimage tar with ctr; it must be usable from there.
func TestCtrImportsTheTestImage(t *testing.T) {
	var ns string
	t.Cleanup(func() { // runs after Start's cleanup
		if _, err := os.Stat(filepath.Join("/run/containerd/runc", ns)); ns != "" && !os.IsNotExist(err) {
			t.Errorf("runc state dir of namespace %s left behind: %v", ns, err)
		}
	})
	d := Start(t)
	tarPath := filepath.Join(d.Dir, "busybox.tar")
	if err := testimage.WriteFile(tarPath, testimage.Options{}); err != nil {
		t.Fatal(err)
	}
	ns = d.Namespace + "-ctr"
	out, err := exec.Command("ctr", "--address", d.Address, "--namespace", ns, "images", "import", tarPath).CombinedOutput()
	if err != nil {
		t.Fatalf("ctr images import: %v: %s", err, out)
	}
	out, err = exec.Command("ctr", "--address", d.Address, "--namespace", ns, "run", "--rm", testimage.Ref, "ctrtest", "echo", "hello").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "hello") {
		t.Fatalf("ctr run of the imported image: %v: %s", err, out)
	}
	_ = os.Remove(tarPath)
}
