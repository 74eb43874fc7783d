/* tool.h -- what every crema command-line tool does first. */
#ifndef CREMA_TOOLS_TOOL_H
#define CREMA_TOOLS_TOOL_H

/* Picks the best OpenBLAS kernel for this CPU before OpenBLAS's choice matters.
 *
 * Debian's OpenBLAS 0.3.21 does not recognise recent Xeons and falls back to its SSE3
 * "Prescott" kernels (about 2.5x slower sgemm). OpenBLAS reads OPENBLAS_CORETYPE once, when
 * the library loads -- before main -- so when the user has not set it and the CPU supports
 * AVX-512 (or AVX2), we set it and re-exec ourselves once. CREMA_NO_REEXEC=1 disables this.
 * Call at the top of main(). */
void crema_tool_init(int argc, char **argv);

/* Logs which BLAS kernel and how many threads are in use (one INFO line). */
void crema_tool_log_blas(void);

#endif
