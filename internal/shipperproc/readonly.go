package shipperproc

import (
	"os"
	"os/exec"
	"testing"
)

// ReadOnlyDir makes dir unwritable: for root, which permissions do not
// stop, with the immutable attribute (chattr +i); for anyone else with
// mode 0500, given back as mode. It returns the function that makes it
// writable again, which also runs at the test's end.
func ReadOnlyDir(t testing.TB, dir string, mode os.FileMode) (writable func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		if err := os.Chmod(dir, 0o500); err != nil {
			t.Fatal(err)
		}
		writable = func() { os.Chmod(dir, mode) }
		t.Cleanup(writable)
		return writable
	}
	if out, err := exec.Command("chattr", "+i", dir).CombinedOutput(); err != nil {
		t.Fatalf("running as root, the test makes %s immutable with chattr +i and cannot: %v %s; "+
			"install e2fsprogs, set TMPDIR to an ext4, xfs or btrfs directory, or run the test as another user", dir, err, out)
	}
	writable = func() { exec.Command("chattr", "-i", dir).Run() }
	t.Cleanup(writable)
	return writable
}
