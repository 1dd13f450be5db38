/* pg_floor FD DSN [--] PROG...: the readiness floor for bench/readiness.sh, an ideal notifier
 * against which `vitals notify` is measured.
 *
 * Built like `vitals notify`: PROG (the service) keeps this process's pid, so s6-supervise
 * supervises it; a grandchild, never PROG's child (the postmaster treats unknown children as its
 * own), logs in with libpq and runs "SELECT 1" (the postgres probe's readiness criterion), retried
 * every 1 ms, and writes "\n" to FD on the first success. It gives up after 60 s.
 *
 * cc -O2 -I"$(pg_config --includedir)" pg_floor.c -o pg_floor -lpq */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int ready(const char *dsn) {
  PGconn *c = PQconnectdb(dsn);
  int ok = PQstatus(c) == CONNECTION_OK;
  if (ok) {
    PGresult *r = PQexec(c, "SELECT 1");
    ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    PQclear(r);
  }
  PQfinish(c);
  return ok;
}

static double now_ms(clockid_t clock) {
  struct timespec t;
  clock_gettime(clock, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void poll_until_ready(int fd, const char *dsn) {
  const struct timespec ms = {0, 1000000};
  for (int i = 1; i <= 60000; ++i) {
    const double wall = now_ms(CLOCK_REALTIME), t0 = now_ms(CLOCK_MONOTONIC);
    if (ready(dsn)) {
      if (write(fd, "\n", 1) != 1) perror("pg_floor: write");
      /* after the newline, so it costs the measurement nothing */
      fprintf(stderr, "pg_floor: ready: attempt %d started at %.3f, took %.1fms\n", i, wall / 1e3,
              now_ms(CLOCK_MONOTONIC) - t0);
      return;
    }
    nanosleep(&ms, NULL);
  }
  fprintf(stderr, "pg_floor: no login within 60 s\n");
}

int main(int argc, char **argv) {
  int first = argc > 3 && strcmp(argv[3], "--") == 0 ? 4 : 3;
  if (argc <= first) {
    fprintf(stderr, "usage: pg_floor FD DSN [--] PROG...\n");
    return 100;
  }
  int fd = atoi(argv[1]);
  pid_t a = fork();
  if (a < 0) {
    perror("pg_floor: fork");
    return 111;
  }
  if (a == 0) {
    if (fork() == 0) poll_until_ready(fd, argv[2]);
    _exit(0);
  }
  waitpid(a, NULL, 0);
  close(fd);
  execvp(argv[first], argv + first);
  perror("pg_floor: exec");
  return 111;
}
