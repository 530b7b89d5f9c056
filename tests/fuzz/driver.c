/*
 * Runs the fuzz target over saved inputs, for compilers without libFuzzer: make
 * test runs it (as build/tests/test_fuzz_corpus) over tests/fuzz/corpus, so every
 * input that once found a bug stays a regression test. Files named on the command
 * line are run instead when given.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Each target has its own corpus directory (-DCORPUS=...). */
#ifndef CORPUS
#define CORPUS "tests/fuzz/corpus"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
    static uint8_t buf[1 << 20];
    FILE *f = fopen(path, "rb");
    size_t len;

    if (f == NULL) {
        perror(path);
        return -1;
    }
    len = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, len);
    return 0;
}

int main(int argc, char **argv)
{
    int n = 0, bad = 0;

    if (argc > 1) {
        for (int i = 1; i < argc; i++)
            run_file(argv[i]) == 0 ? n++ : bad++;
    } else {
        DIR *d = opendir(CORPUS);
        struct dirent *de;

        if (d == NULL) {
            perror(CORPUS);
            return 1;
        }
        while ((de = readdir(d)) != NULL) {
            char path[4096];
            if (de->d_name[0] == '.')
                continue;
            snprintf(path, sizeof(path), "%s/%s", CORPUS, de->d_name);
            run_file(path) == 0 ? n++ : bad++;
        }
        closedir(d);
    }
    /* A crash or an abort() in the target ends the process before this line. */
    printf("tests/fuzz/driver.c: %d passed, %d failed\n", n, bad);
    return bad != 0;
}
