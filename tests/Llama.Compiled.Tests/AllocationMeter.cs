using System;
using System.Linq;
using System.Reflection;
using Xunit;

namespace Llama.Compiled.Tests;

/// <summary>
/// Measures what a warmed-up loop allocates: exactly, on the calling thread, and per operation, on every thread of
/// the process, since the session's worker threads run part of every forward pass and an allocation there is as much
/// a per-token cost as one on the caller's thread (the meter used to read only
/// <see cref="GC.GetAllocatedBytesForCurrentThread"/>, and missed the workers).
/// </summary>
/// <remarks>
/// <para>
/// A window passes when the calling thread allocates nothing and the whole process
/// (<see cref="GC.GetTotalAllocatedBytes(bool)"/>, precise) allocates less than <see cref="SmallestObject"/> bytes
/// per operation: an allocation made per token, per job or per call, on any thread, is at least that much. The
/// process as a whole is not held to zero because it never is: measured here, idle windows of a warmed-up decode
/// loop are charged 168 to 840 bytes (multiples of 168, growing with the window's length: a timer of the runtime or
/// the test host), against 48,000 bytes that one 24-byte object per token would make over 2,000 tokens. Counting the
/// whole process also means no other test may run meanwhile, so the meter is only for tests in the
/// <see cref="SerialReliabilityCollection"/> (xunit runs it alone, after the parallel collections), and it checks that.
/// </para>
/// <para>
/// Even so a window is occasionally charged bytes the code under test did not allocate: the runtime's own one-time
/// work (tiering, on-stack replacement) runs on whichever thread hits it, and dotnet/runtime's test of the API
/// itself tolerates such stray bytes (dotnet/runtime#63487, #74388); our CI failed once this way (1,480 and 7,096
/// bytes over 20 sampler calls that allocate nothing on every local run). So a loop is measured in several windows
/// and passes when one window is clean: an allocation the code makes per call shows in every window and still fails.
/// </para>
/// </remarks>
internal static class AllocationMeter
{
    private const int Windows = 5;

    /// <summary>The smallest managed object on 64-bit .NET (an empty object or a boxed byte: header, method table, padding).</summary>
    public const int SmallestObject = 24;

    /// <summary>
    /// Asserts that in at least one of several runs of <paramref name="window"/>, which performs
    /// <paramref name="operations"/> operations (tokens, calls), this thread allocates nothing and the process less
    /// than <see cref="SmallestObject"/> bytes per operation.
    /// </summary>
    /// <returns>The bytes the process allocated in each window that was run.</returns>
    public static long[] AssertSomeWindowAllocatesNothing(int operations, Action window)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(operations);
        AssertRunsAlone(window);
        long bound = (long)SmallestObject * operations;
        long[] process = new long[Windows], thread = new long[Windows];
        for (int i = 0; i < Windows; i++)
        {
            long processBefore = GC.GetTotalAllocatedBytes(precise: true);
            long threadBefore = GC.GetAllocatedBytesForCurrentThread();
            window();
            thread[i] = GC.GetAllocatedBytesForCurrentThread() - threadBefore;
            process[i] = GC.GetTotalAllocatedBytes(precise: true) - processBefore;
            if (thread[i] == 0 && process[i] < bound)
                return process[..(i + 1)];
        }
        Assert.Fail($"every one of {Windows} windows of {operations} operations allocated, on this thread: {string.Join(", ", thread.Select(b => $"{b} B"))}; " +
                    $"in the process (at most {bound - 1} B tolerated): {string.Join(", ", process.Select(b => $"{b} B"))}");
        return process;
    }

    /// <summary>The test that made <paramref name="window"/> (its lambda's class, or the class that encloses it) is in the serial collection.</summary>
    private static void AssertRunsAlone(Action window)
    {
        for (Type? type = window.Method.DeclaringType; type is not null; type = type.DeclaringType)
        {
            CustomAttributeData? collection = type.GetCustomAttributesData().FirstOrDefault(a => a.AttributeType == typeof(CollectionAttribute));
            if (collection is not null)
            {
                Assert.True(Equals(collection.ConstructorArguments[0].Value, SerialReliabilityCollection.Name),
                    $"{type.Name} is in collection '{collection.ConstructorArguments[0].Value}': the allocation meter counts every thread, so only tests in [Collection(SerialReliabilityCollection.Name)] may use it");
                return;
            }
        }
        Assert.Fail($"{window.Method.DeclaringType} is in no collection: the allocation meter counts every thread, so only tests in [Collection(SerialReliabilityCollection.Name)] may use it");
    }
}
