/*
 * localmap profiling workloads: small loops that mirror the talk's benchmarks.
 *
 *   lmwork NAME N IDX
 *
 * runs one warm-up round, then executes the marker "movk xzr, #(2*IDX)", N rounds of workload
 * NAME, and the marker "movk xzr, #(2*IDX+1)".  The markers are no-ops for the CPU; the lab's
 * TCG plugin snapshots its counters when one executes.  It prints "ops=<operations>" so the
 * host knows how many operations the N rounds were (pages for page-fault and vm).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE 4096UL
#define PF_BYTES (4UL << 20)      /* page-fault: shared file mapping per round */
#define VM_BYTES (4UL << 20)      /* vm: anonymous mapping per round */
#define MMAPFORK_BYTES (2UL << 20) /* mmapfork: anonymous mapping per child */

static void marker(unsigned imm)
{
	/* movk xzr, #imm followed by ret, written at run time: the immediate is not a constant */
	unsigned *code = mmap(NULL, PAGE, PROT_READ | PROT_WRITE | PROT_EXEC,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (code == MAP_FAILED) {
		perror("mmap marker");
		exit(1);
	}
	code[0] = 0xf280001fu | ((imm & 0xffffu) << 5);
	code[1] = 0xd65f03c0u;
	__builtin___clear_cache((char *)code, (char *)(code + 2));
	((void (*)(void))code)();
	munmap(code, PAGE);
}

static void touch(char *p, unsigned long bytes)
{
	for (unsigned long off = 0; off < bytes; off += PAGE)
		p[off] = 1;
}

/* the parent's side of a round that forks: a failed fork ends the program; one operation */
static long reap(pid_t pid)
{
	if (pid < 0) {
		perror("fork");
		exit(1);
	}
	waitpid(pid, NULL, 0);
	return 1;
}

static int pf_fd = -1;

static long round_page_fault(void)
{
	/* page_fault3: MAP_SHARED file mapping, write one byte per page, unmap */
	if (pf_fd < 0) {
		char name[] = "/tmp/lmwork-pf-XXXXXX";
		pf_fd = mkstemp(name);
		if (pf_fd < 0 || ftruncate(pf_fd, PF_BYTES)) {
			perror("page-fault file");
			exit(1);
		}
		unlink(name);
	}
	char *p = mmap(NULL, PF_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, pf_fd, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	touch(p, PF_BYTES);
	munmap(p, PF_BYTES);
	return PF_BYTES / PAGE;
}

static long round_vm(void)
{
	/*
	 * stress-ng vm: anonymous mapping, write every page, read it back, unmap; 4K pages (no
	 * transparent huge page), so every page is one fault, one allocation, one set of stat updates
	 */
	char *p = mmap(NULL, VM_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	volatile char sum = 0;
	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	madvise(p, VM_BYTES, MADV_NOHUGEPAGE);
	touch(p, VM_BYTES);
	for (unsigned long off = 0; off < VM_BYTES; off += PAGE)
		sum += p[off];
	munmap(p, VM_BYTES);
	return VM_BYTES / PAGE;
}

static long round_fork(void)
{
	pid_t pid = fork();
	if (pid == 0)
		_exit(0);
	return reap(pid);
}

static long round_mmapfork(void)
{
	/* stress-ng mmapfork: each child maps, touches, advises and unmaps memory, then exits */
	pid_t pid = fork();
	if (pid == 0) {
		char *p = mmap(NULL, MMAPFORK_BYTES, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			_exit(1);
		touch(p, MMAPFORK_BYTES);
		madvise(p, MMAPFORK_BYTES, MADV_DONTNEED);
		touch(p, MMAPFORK_BYTES);
		munmap(p, MMAPFORK_BYTES);
		_exit(0);
	}
	return reap(pid);
}

static long memcg_seq;

static long round_memcg(void)
{
	/* memcg creation: one child of the workload's cgroup (its percpu counters, refcounts) */
	char name[64];
	snprintf(name, sizeof(name), "/sys/fs/cgroup/lm/c%ld", memcg_seq++);
	if (mkdir(name, 0755)) {
		perror(name);
		exit(1);
	}
	return 1;
}

static long round_exec_io(void)
{
	/* build-like: fork + exec of a static program, which writes, reads and unlinks a file */
	pid_t pid = fork();
	if (pid == 0) {
		execl("/lmwork", "lmwork", "io-child", NULL);
		_exit(127);
	}
	return reap(pid);
}

static int io_child(void)
{
	static char buf[64 * 1024];
	char name[64];
	snprintf(name, sizeof(name), "/tmp/lmwork-io-%d", (int)getpid());
	int fd = open(name, O_CREAT | O_RDWR | O_TRUNC, 0644);
	if (fd < 0)
		return 1;
	memset(buf, 'x', sizeof(buf));
	if (write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
		return 1;
	lseek(fd, 0, SEEK_SET);
	if (read(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
		return 1;
	close(fd);
	unlink(name);
	return 0;
}

static long round_syscall(void)
{
	/* exactness probe: every system call enters el0_svc once (and getppid does little else) */
	syscall(SYS_getppid);
	return 1;
}

struct workload {
	const char *name;
	long (*round)(void);
};

static const struct workload workloads[] = {
	{ "page-fault", round_page_fault }, { "vm", round_vm }, { "fork", round_fork },
	{ "mmapfork", round_mmapfork }, { "memcg", round_memcg }, { "exec-io", round_exec_io },
	{ "syscall", round_syscall },
};

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "io-child") == 0)
		return io_child();
	if (argc != 4) {
		fprintf(stderr, "usage: lmwork NAME ROUNDS IDX\n");
		return 2;
	}
	long n = atol(argv[2]);
	unsigned idx = (unsigned)atoi(argv[3]);
	for (unsigned i = 0; i < sizeof(workloads) / sizeof(workloads[0]); i++) {
		if (strcmp(argv[1], workloads[i].name))
			continue;
		long ops = 0;
		workloads[i].round();   /* warm-up: first-touch allocations, page cache, paths */
		marker(2 * idx);
		for (long r = 0; r < n; r++)
			ops += workloads[i].round();
		marker(2 * idx + 1);
		printf("LMWORK %s ops=%ld\n", argv[1], ops);
		fflush(stdout);
		return 0;
	}
	fprintf(stderr, "lmwork: unknown workload %s\n", argv[1]);
	return 2;
}
