using System;
using System.Linq;
using System.Reflection;
using Xunit;

namespace Llama.Compiled.Tests;

/// <summary>
/// Measures what a warmed-up loop allocates, on every thread of the process: the session's worker threads run
/// part of every forward pass, and an allocation there is as much a per-token cost as one on the caller's thread.
/// </summary>
/// <remarks>
/// <para>
/// <see cref="GC.GetTotalAllocatedBytes(bool)"/> with <c>precise: true</c> counts every thread (it was
/// <see cref="GC.GetAllocatedBytesForCurrentThread"/>, which missed the workers). Counting the whole process means
/// no other test may run meanwhile, so the meter is only for tests in the
/// <see cref="SerialReliabilityCollection"/> (xunit runs it alone, after the parallel collections), and it checks that.
/// </para>
/// <para>
/// The process is occasionally charged a few KB the code under test did not allocate: the runtime's own one-time
/// work (tiering, on-stack replacement, the tiered-compilation worker) runs on whichever thread hits it, and with
/// every thread counted the runner's threads join in too. dotnet/runtime's test of the API itself tolerates such
/// stray bytes (dotnet/runtime#63487, #74388), and our CI failed once this way (1,480 and 7,096 bytes over 20
/// sampler calls that allocate nothing on every local run). So a loop is measured in several windows and passes
/// when one window allocates nothing: an allocation the code makes per call, on any thread, shows in every window
/// and still fails.
/// </para>
/// </remarks>
internal static class AllocationMeter
{
    private const int Windows = 5;

    /// <summary>Asserts that at least one of several runs of <paramref name="window"/> allocates no bytes on any thread.</summary>
    /// <returns>The bytes allocated by each window that was run (the last one is 0 when this returns).</returns>
    public static long[] AssertSomeWindowAllocatesNothing(Action window)
    {
        AssertRunsAlone(window);
        long[] bytes = new long[Windows];
        for (int i = 0; i < Windows; i++)
        {
            long before = GC.GetTotalAllocatedBytes(precise: true);
            window();
            bytes[i] = GC.GetTotalAllocatedBytes(precise: true) - before;
            if (bytes[i] == 0)
                return bytes[..(i + 1)];
        }
        Assert.Fail($"every one of {Windows} windows allocated: {string.Join(", ", bytes.Select(b => $"{b} B"))}");
        return bytes;
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
