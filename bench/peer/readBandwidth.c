// Read bandwidth of this machine's memory, as a generated token on the CPU needs it: every weight
// read once per decode step, far beyond the caches. One buffer of SIZE bytes (default 1 GiB, larger
// than any L3 here), touched first, then summed PASSES times by each of THREADS threads over its own
// slice (wide loads, four accumulators so the adds do not limit it). Prints the best pass in GB/s
// (10^9 bytes): the bandwidth ceiling of a decode step is bytes of weights / this.
//   read-bandwidth [threads] [MiB] [passes]
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef uint64_t v8 __attribute__((vector_size(64)));

struct slice {
    const v8* begin;
    size_t count;
    uint64_t sum[8];  // not a v8: calloc'd slices are not 64-byte aligned
};

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void* sum_slice(void* arg) {
    struct slice* s = (struct slice*)arg;
    v8 a = {0}, b = {0}, c = {0}, d = {0};
    size_t i = 0;
    for (; i + 4 <= s->count; i += 4) {
        a += s->begin[i];
        b += s->begin[i + 1];
        c += s->begin[i + 2];
        d += s->begin[i + 3];
    }
    for (; i < s->count; ++i) a += s->begin[i];
    const v8 total = a + b + c + d;
    memcpy(s->sum, &total, sizeof total);
    return NULL;
}

int main(int argc, char** argv) {
    const int threads = argc > 1 ? atoi(argv[1]) : 1;
    const size_t mib = argc > 2 ? (size_t)atol(argv[2]) : 1024;
    const int passes = argc > 3 ? atoi(argv[3]) : 5;
    if (threads < 1 || threads > 256 || mib < 64 || passes < 1) {
        fprintf(stderr, "usage: read-bandwidth [threads 1-256] [MiB >= 64] [passes >= 1]\n");
        return 2;
    }
    const size_t bytes = mib << 20;
    v8* buffer = NULL;
    if (posix_memalign((void**)&buffer, 4096, bytes) != 0) {
        fprintf(stderr, "read-bandwidth: cannot allocate %zu MiB\n", mib);
        return 1;
    }
    memset(buffer, 1, bytes);  // fault every page in before timing
    const size_t vectors = bytes / sizeof(v8);
    struct slice* slices = calloc((size_t)threads, sizeof(struct slice));
    pthread_t* ids = calloc((size_t)threads, sizeof(pthread_t));
    double best = 0;
    uint64_t check = 0;
    for (int pass = 0; pass < passes; ++pass) {
        for (int t = 0; t < threads; ++t) {
            const size_t from = vectors * (size_t)t / (size_t)threads, to = vectors * (size_t)(t + 1) / (size_t)threads;
            slices[t].begin = buffer + from;
            slices[t].count = to - from;
        }
        const double started = now();
        for (int t = 1; t < threads; ++t) pthread_create(&ids[t], NULL, sum_slice, &slices[t]);
        sum_slice(&slices[0]);
        for (int t = 1; t < threads; ++t) pthread_join(ids[t], NULL);
        const double seconds = now() - started;
        for (int t = 0; t < threads; ++t) for (int k = 0; k < 8; ++k) check += slices[t].sum[k];
        const double rate = (double)bytes / seconds / 1e9;
        if (rate > best) best = rate;
    }
    // The checksum keeps the sums alive; printed on stderr so stdout stays one number.
    fprintf(stderr, "read-bandwidth: %d thread(s), %zu MiB, %d passes, checksum %llu\n", threads, mib, passes, (unsigned long long)check);
    printf("%.3f\n", best);
    free(ids);
    free(slices);
    free(buffer);
    return 0;
}
