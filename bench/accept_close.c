// accept_close PORT: listens on 127.0.0.1:PORT and closes every connection it accepts, as fast
// as it can (the tcp probes' target in scale.sh; a Python loop falls behind 2,000 connects/s on a
// loaded machine, and then the kernel's accept queue overflows and connects stall).
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: accept_close PORT\n");
    return 2;
  }
  int s = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1])),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(s, (struct sockaddr*)&a, sizeof a) != 0 || listen(s, 4096) != 0) {
    perror("accept_close");
    return 1;
  }
  for (;;) {
    int c = accept(s, NULL, NULL);
    if (c >= 0) close(c);
  }
}
