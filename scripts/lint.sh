#!/usr/bin/env bash
# The house rules of STYLE.md that a machine can check; `make lint` runs it and `make check`
# runs it before the tests. Prints each violation as "lint: file[:line]: rule: what" and a
# closing line; exits non-zero when any rule is broken. Takes about a second.
#
#   1. include graph: core/ is the bottom layer. A core/*.c or core/*.h may include system
#      headers and core/ headers only: a quoted include must name core/..., and neither form
#      may name shm/, workers/, cmd/ or tests/.
#   2. core purity: no object built from core/ may have an undefined reference to a function
#      that does I/O or reads the clock, the environment or the process (the deny-list below;
#      memory, strings, formatting into buffers and math are fine), nor to a cw_ symbol that no
#      core/ object defines (a call into shm/ or workers/). core/log.o is the one exception
#      (STYLE.md: it writes to the fd its main gives it).
#   3. formatting: every tracked .c and .h is as clang-format (v14, the repo's .clang-format)
#      would write it.
#
# BUILD: the build folder whose core objects are checked (make lint builds them first).
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build/rel}
CLANG_FORMAT=${CLANG_FORMAT:-$(command -v clang-format-14 || command -v clang-format || true)}
failed=0

lint_fail()
{
    echo "lint: $*" >&2
    failed=$((failed + 1))
}

# ---- 1. include graph ----------------------------------------------------------------------
include_re='^[[:space:]]*#[[:space:]]*include[[:space:]]*([<"])([^>"]*)[>"]'
while IFS=: read -r file line text; do
    [[ "$text" =~ $include_re ]] || continue
    quote=${BASH_REMATCH[1]}
    target=${BASH_REMATCH[2]}
    case "$target" in
    shm/* | workers/* | cmd/* | tests/* | */shm/* | */workers/* | */cmd/* | */tests/*)
        lint_fail "$file:$line: core includes $target: core/ may include only core/ and system headers"
        continue
        ;;
    esac
    if [ "$quote" = '"' ] && [[ "$target" != core/* ]]; then
        lint_fail "$file:$line: core includes \"$target\": name core/ headers as \"core/...\""
    fi
done < <(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]' core/*.c core/*.h)

# ---- 2. core purity: nm -u on every core object --------------------------------------------
# The deny-list. Each name is a libc (or libconfig) function that reaches outside the bytes a
# core function is given; the _chk, 64 and __ variants are what glibc headers turn calls into.
#   files and fds: open read write seek stat sync mmap ioctl fcntl pipe dup poll epoll...
#   stdio streams: fopen fread fwrite fprintf printf puts fputs fgets getline fflush perror...
#   network:       socket connect bind listen accept send recv getaddrinfo setsockopt...
#   clock:         time clock_gettime gettimeofday clock localtime mktime sleep nanosleep...
#   environment:   getenv setenv putenv; the process: getpid getuid fork exec* system kill
#                  signal sigaction raise; randomness: rand random getrandom getentropy
#   logging:       syslog openlog vsyslog
#   libconfig's own file I/O: config_read_file config_read config_write config_write_file
# Allowed on purpose: malloc/calloc/realloc/free, str*/mem*, snprintf/vsnprintf (into a
# buffer), strtol and friends, inet_pton, gmtime_r (a pure conversion), math, __errno_location,
# __assert_fail (assert on invariants), __stack_chk_fail and sanitizer hooks.
deny=(
    open open64 openat openat64 __open_2 __open64_2 __openat_2 creat creat64 close close_range
    read pread pread64 readv preadv write pwrite pwrite64 writev pwritev __read_chk
    __pread_chk __pread64_chk lseek lseek64 fsync fdatasync sync syncfs ftruncate ftruncate64
    truncate stat stat64 fstat fstat64 lstat lstat64 fstatat fstatat64 statx __xstat __fxstat
    __lxstat __xstat64 __fxstat64 __lxstat64 access faccessat unlink unlinkat rename renameat
    mkdir mkdirat rmdir opendir fdopendir readdir readdir64 closedir readlink realpath chdir
    getcwd mmap mmap64 munmap mprotect msync madvise ioctl fcntl fcntl64 flock pipe pipe2 dup
    dup2 dup3 poll ppoll select pselect epoll_create epoll_create1 epoll_ctl epoll_wait
    epoll_pwait eventfd signalfd timerfd_create inotify_init memfd_create shm_open sendfile
    fopen fopen64 fdopen freopen freopen64 fclose fread fread_unlocked __fread_chk fwrite
    fwrite_unlocked fgets __fgets_chk fgetc getc getc_unlocked getchar fputs fputc putc
    putchar puts printf fprintf vprintf vfprintf dprintf vdprintf __printf_chk __fprintf_chk
    __vprintf_chk __vfprintf_chk __dprintf_chk __vdprintf_chk fflush fscanf vfscanf scanf
    __isoc99_fscanf __isoc99_scanf __isoc23_fscanf __isoc23_scanf getline getdelim __getdelim
    fseek fseeko fseeko64 ftell ftello rewind feof ferror clearerr fileno setvbuf perror tmpfile
    mkstemp mkstemp64 popen pclose
    socket socketpair connect bind listen accept accept4 send sendto sendmsg sendmmsg recv
    recvfrom recvmsg recvmmsg __recv_chk __recvfrom_chk shutdown setsockopt getsockopt
    getsockname getpeername getaddrinfo freeaddrinfo getnameinfo gethostbyname gethostbyname_r
    time clock_gettime __clock_gettime __clock_gettime64 gettimeofday clock clock_getres ftime
    times localtime localtime_r mktime timegm tzset sleep usleep nanosleep clock_nanosleep
    getenv secure_getenv setenv unsetenv putenv clearenv
    getpid getppid gettid getuid geteuid getgid getegid fork vfork execve execv execvp execl
    execlp system kill raise signal sigaction sigprocmask pthread_sigmask exit _exit abort
    rand rand_r random srand srandom drand48 getrandom getentropy arc4random
    syslog openlog closelog vsyslog __syslog_chk __vsyslog_chk
    config_read_file config_read config_write config_write_file
)
core_objs=("$BUILD"/core/*.o)
if [ ! -e "${core_objs[0]}" ]; then
    lint_fail "$BUILD/core: no objects to check (run make lint, which builds them)"
else
    # One awk over nm's output: the deny-list, then the cw_ symbols core defines, then each
    # object's undefined references ("file.o: U sym").
    while IFS= read -r msg; do lint_fail "$msg"; done < <(
        {
            printf 'DENY %s\n' "${deny[@]}"
            nm -g --defined-only "${core_objs[@]}" | awk 'NF == 3 { print "DEF", $3 }'
            nm -A -u "${core_objs[@]}"
        } | awk '
            $1 == "DENY" { deny[$2] = 1; next }
            $1 == "DEF" { def[$2] = 1; next }
            {
                obj = $1; sub(/:$/, "", obj); sym = $NF; sub(/@.*/, "", sym)
                if (obj ~ /\/core\/log\.o$/) next # the one exception, see above
                if (sym in deny)
                    print obj ": core object calls " sym " (I/O, clock, environment or process)"
                else if (sym ~ /^cw_/ && !(sym in def))
                    print obj ": core object calls " sym ", which no core/ object defines"
            }')
fi

# ---- 3. formatting -------------------------------------------------------------------------
if [ -z "$CLANG_FORMAT" ]; then
    lint_fail "clang-format not found (Debian: apt-get install clang-format)"
elif ! "$CLANG_FORMAT" --version | grep -q 'version 14\.'; then
    lint_fail "$CLANG_FORMAT is not version 14; STYLE.md's .clang-format is for v14"
else
    mapfile -t sources < <(git ls-files '*.c' '*.h')
    out=$("$CLANG_FORMAT" --dry-run -Werror "${sources[@]}" 2>&1 >/dev/null)
    rc=$?
    bad=$(sed -nE 's/^([^:]+):([0-9]+):[0-9]+: error: code should be clang-formatted.*/\1:\2/p' \
        <<<"$out" | sort -u)
    for where in $bad; do
        lint_fail "$where: formatting differs from .clang-format (make format fixes it)"
    done
    if [ "$rc" -ne 0 ] && [ -z "$bad" ]; then
        lint_fail "$CLANG_FORMAT failed: $(head -n 3 <<<"$out")"
    fi
fi

if [ "$failed" -ne 0 ]; then
    echo "lint: $failed violation(s)" >&2
    exit 1
fi
echo "lint: ok (core include graph, core symbols, clang-format on $(git ls-files '*.c' '*.h' |
    wc -l) files)"
