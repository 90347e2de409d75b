using System.ComponentModel;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;

namespace Llama.Compiled.CompilerServices;

/// <summary>
/// Software prefetch for the generated kernels (which cannot use pointers: the user's project need not allow
/// unsafe code). A hint only: it never changes a result, and prefetching an address that is not mapped does not fault.
/// </summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public static unsafe class Prefetch
{
    private const int LineBytes = 64;

    /// <summary>
    /// Asks the CPU to bring the cache lines of [<paramref name="start"/>, <paramref name="start"/> + <paramref name="bytes"/>)
    /// into the caches. <paramref name="start"/> must point into native memory (the weights), never into the managed heap.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    public static void Lines(ref readonly byte start, int bytes)
    {
        if (!Sse.IsSupported)
            return;
        byte* p = (byte*)Unsafe.AsPointer(ref Unsafe.AsRef(in start));
        for (int offset = 0; offset < bytes; offset += LineBytes)
            Sse.Prefetch0(p + offset);
    }
}
