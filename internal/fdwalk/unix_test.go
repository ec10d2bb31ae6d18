package fdwalk_test

import "golang.org/x/sys/unix"

func mkdirat(fd int, name string) error { return unix.Mkdirat(fd, name, 0o755) }

func openat(fd int, name string) (int, error) {
	return unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
}

func closeFD(fd int) { unix.Close(fd) }
