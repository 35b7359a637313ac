/* A stand-in bcryptprimitives.dll for running Rust binaries under Wine 8, which lacks it: Rust's std
 * imports ProcessPrng from it for HashMap keys and randomness. This implements ProcessPrng on top of
 * RtlGenRandom (advapi32's SystemFunction036), which Wine has. Only for tools/windows-smoke.sh; a real
 * Windows 10/11 ships its own bcryptprimitives.dll and never loads this one.
 * Build: x86_64-w64-mingw32-gcc -shared -O2 -o bcryptprimitives.dll windows-bcryptprimitives.c */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    /* RtlGenRandom takes a ULONG (32-bit) length: fill larger requests in pieces. */
    while (len > 0) {
        ULONG n = len > 0x40000000u ? 0x40000000u : (ULONG)len;
        if (!SystemFunction036(data, n))
            return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}
