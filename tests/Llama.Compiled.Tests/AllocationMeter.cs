using System;
using System.Linq;
using Xunit;

namespace Llama.Compiled.Tests;

/// <summary>
/// Measures what a warmed-up loop allocates on the calling thread.
/// </summary>
/// <remarks>
/// <see cref="GC.GetAllocatedBytesForCurrentThread"/> is occasionally charged a few KB the code under test did not
/// allocate: the runtime's own one-time work (tiering, on-stack replacement) runs on whichever thread hits it, and
/// dotnet/runtime's test of the API itself tolerates such stray bytes (dotnet/runtime#63487, #74388). Our CI failed
/// once this way (1,480 and 7,096 bytes over 20 sampler calls that allocate nothing on every local run). So a
/// loop is measured in several windows and passes when one window allocates nothing: an allocation the code makes
/// per call shows in every window and still fails.
/// </remarks>
internal static class AllocationMeter
{
    private const int Windows = 5;

    /// <summary>Asserts that at least one of several runs of <paramref name="window"/> allocates no bytes on this thread.</summary>
    /// <returns>The bytes allocated by each window that was run (the last one is 0 when this returns).</returns>
    public static long[] AssertSomeWindowAllocatesNothing(Action window)
    {
        long[] bytes = new long[Windows];
        for (int i = 0; i < Windows; i++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            window();
            bytes[i] = GC.GetAllocatedBytesForCurrentThread() - before;
            if (bytes[i] == 0)
                return bytes[..(i + 1)];
        }
        Assert.Fail($"every one of {Windows} windows allocated: {string.Join(", ", bytes.Select(b => $"{b} B"))}");
        return bytes;
    }
}
