/*
 * A program that is not named python* and runs a target script in an embedded interpreter.
 *
 *   embedder SCRIPT OUT SIGNAL...
 *       linked against libpython, which the dynamic loader maps before main() runs.
 *   embedder LIBPYTHON SCRIPT OUT SIGNAL...      (built with -DEMBED_DLOPEN)
 *       waits for one line on stdin, then dlopen()s LIBPYTHON with RTLD_GLOBAL and resolves
 *       the few functions it calls with dlsym().
 *
 * With EMBEDDER_STOP_BEFORE_INIT set in the environment, the dlopen build stops after
 * loading libpython, before Py_Initialize: it ignores SIGUSR1 and SIGUSR2 through a handler
 * that does nothing, prints "ready" and waits forever (libpython mapped, no interpreter).
 *
 * Otherwise sys.argv becomes [SCRIPT, OUT, SIGNAL...], SCRIPT's directory goes first on
 * sys.path, and SCRIPT runs as __main__ through PyRun_SimpleFileExFlags, so its stack is
 * the same as under `python SCRIPT OUT SIGNAL...`.
 */
#ifndef EMBED_DLOPEN
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#endif

#include <dlfcn.h>
#include <signal.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef EMBED_DLOPEN
typedef struct PyCompilerFlags PyCompilerFlags;
static void (*Py_Initialize)(void);
static int (*PyRun_SimpleString)(const char *);
static int (*PyRun_SimpleFileExFlags)(FILE *, const char *, int, PyCompilerFlags *);

static void nothing(int signum)
{
    (void)signum;
}

static void *resolve(void *lib, const char *name)
{
    void *sym = dlsym(lib, name);
    if (sym == NULL) {
        fprintf(stderr, "embedder: dlsym(%s): %s\n", name, dlerror());
        exit(2);
    }
    return sym;
}
#endif

/* Appends `b'\xHH...'` for every byte of s. */
static char *append_bytes(char *out, const char *s)
{
    out += sprintf(out, "b'");
    for (; *s; s++)
        out += sprintf(out, "\\x%02x", (unsigned char)*s);
    return out + sprintf(out, "'");
}

int main(int argc, char **argv)
{
    int first = 1;
#ifdef EMBED_DLOPEN
    if (argc < 4) {
        fprintf(stderr, "usage: %s LIBPYTHON SCRIPT OUT SIGNAL...\n", argv[0]);
        return 2;
    }
    char line[64];
    if (fgets(line, sizeof line, stdin) == NULL) {
        fprintf(stderr, "embedder: no go line on stdin\n");
        return 2;
    }
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL);
    if (lib == NULL) {
        fprintf(stderr, "embedder: dlopen: %s\n", dlerror());
        return 2;
    }
    *(void **)&Py_Initialize = resolve(lib, "Py_Initialize");
    *(void **)&PyRun_SimpleString = resolve(lib, "PyRun_SimpleString");
    *(void **)&PyRun_SimpleFileExFlags = resolve(lib, "PyRun_SimpleFileExFlags");
    first = 2;
    if (getenv("EMBEDDER_STOP_BEFORE_INIT") != NULL) {
        signal(SIGUSR1, nothing);
        signal(SIGUSR2, nothing);
        printf("ready\n");
        fflush(stdout);
        for (;;)
            pause();
    }
#else
    if (argc < 3) {
        fprintf(stderr, "usage: %s SCRIPT OUT SIGNAL...\n", argv[0]);
        return 2;
    }
#endif
    const char *script = argv[first];
    size_t size = 256;
    for (int i = first; i < argc; i++)
        size += 4 * strlen(argv[i]) + 32;
    char *code = malloc(size), *p = code;
    if (code == NULL)
        return 2;
    p += sprintf(p, "import os, sys\nsys.argv = [os.fsdecode(a) for a in (");
    for (int i = first; i < argc; i++) {
        p = append_bytes(p, argv[i]);
        p += sprintf(p, ", ");
    }
    sprintf(p, ")]\nsys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[0])))\n"
               "del os, sys\n");

    Py_Initialize();
    if (PyRun_SimpleString(code) != 0) {
        fprintf(stderr, "embedder: setting sys.argv failed\n");
        return 2;
    }
    free(code);
    FILE *fp = fopen(script, "r");
    if (fp == NULL) {
        perror(script);
        return 2;
    }
    return PyRun_SimpleFileExFlags(fp, script, 1, NULL) == 0 ? 0 : 1;
}
