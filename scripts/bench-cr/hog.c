/* Memory hog for scripts/bench-cr.sh (a benchmark, not a test).
 *
 *   hog MIB OUTDIR
 *
 * Dirties MIB MiB of private anonymous memory with a position-dependent pattern, writes
 * OUTDIR/hog.ready (atomically), then ticks every millisecond and remembers the longest gap
 * between two ticks: that is how long it was kept from running (a freeze as this process sees
 * it). SIGUSR1: write OUTDIR/hog.gap (the longest gap since the last report, in microseconds)
 * and start over. SIGUSR2: verify every word, write OUTDIR/hog.result ("PASS" or
 * "FAIL: ..."), exit 0 on PASS, 1 on FAIL.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t go, report;
static void on_usr1(int s) { (void)s; report = 1; }
static void on_usr2(int s) { (void)s; go = 1; }

static uint64_t now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000 + (uint64_t)t.tv_nsec / 1000;
}

static uint64_t pattern(uint64_t i)
{
    uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull;
    return x ^ (x >> 29);
}

static void put(const char *dir, const char *name, const char *text)
{
    char tmp[4096], path[4096];
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(tmp, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0 || rename(tmp, path) != 0) {
        perror(path);
        exit(2);
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: hog MIB OUTDIR\n");
        return 2;
    }
    size_t words = (size_t)atol(argv[1]) << 17; /* MiB / 8 */
    const char *out = argv[2];
    uint64_t *mem = NULL;
    if (words) {
        mem = mmap(NULL, words * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (mem == MAP_FAILED) {
            perror("mmap");
            return 2;
        }
    }
    for (size_t i = 0; i < words; i++)
        mem[i] = pattern(i);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_handler = on_usr2;
    sigaction(SIGUSR2, &sa, NULL);
    char text[256];
    snprintf(text, sizeof text, "%d\n", getpid());
    put(out, "hog.ready", text);
    uint64_t last = now_us(), gap = 0;
    while (!go) {
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
        uint64_t t = now_us();
        if (t - last > gap)
            gap = t - last;
        last = t;
        if (report) {
            report = 0;
            snprintf(text, sizeof text, "%llu\n", (unsigned long long)gap);
            put(out, "hog.gap", text);
            gap = 0;
        }
    }
    for (size_t i = 0; i < words; i++) {
        if (mem[i] != pattern(i)) {
            snprintf(text, sizeof text, "FAIL: word %zu (byte offset %zu) is %#llx, expected %#llx\n", i, i * 8,
                     (unsigned long long)mem[i], (unsigned long long)pattern(i));
            put(out, "hog.result", text);
            return 1;
        }
    }
    put(out, "hog.result", "PASS\n");
    return 0;
}
