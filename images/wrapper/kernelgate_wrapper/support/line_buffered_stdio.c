/* Linked into every C and C++ program of the wrapper kernel (images/gcc builds it).
 * stdout is a pipe, which stdio would fully buffer: output would only appear when 4 KiB
 * had gathered or the program ended.  Line buffering streams it line by line, and a
 * line-buffered stdin makes glibc flush stdout before each read, so prompts appear before
 * the input request. */
#include <stdio.h>

__attribute__((constructor)) static void kernelgate_line_buffered_stdio(void)
{
    setvbuf(stdout, NULL, _IOLBF, BUFSIZ);
    setvbuf(stdin, NULL, _IOLBF, BUFSIZ);
}
