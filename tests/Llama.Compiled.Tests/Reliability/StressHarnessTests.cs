using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Reflection;
using Xunit;

namespace Llama.Compiled.Tests;

/// <summary>
/// A bounded run of samples/Stress: load → prefill → decode → dispose cycles over F32, Q8_0 and Q4_0 kernels, mapped
/// and copied weights, 1 and 2 threads, each compared bit for bit with the one-thread run, in one process and in
/// fresh processes with crash dumps enabled. The long run (10,000 cycles) is by hand; see the sample's header.
/// The worker-pool race it was written to find is pinned down by WorkerPoolTests (this run is too short to meet it
/// reliably: the harness saw it twice in 2,400 cycles before the fix).
/// </summary>
[Collection(SerialReliabilityCollection.Name)]
public sealed class StressHarnessTests
{
    [Fact]
    public async System.Threading.Tasks.Task ShortCyclesInOneProcessAndInFreshProcessesAllMatchTheOneThreadRun()
    {
        string harness = typeof(StressHarnessTests).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .Single(a => a.Key == "StressHarness").Value!;
        Assert.True(File.Exists(harness), $"the stress harness is not built at {harness}");
        using var temp = new TempFolder();
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string arg in new[] { harness, "--cycles", "240", "--processes", "4", "--cycles-per-process", "48",
                                       "--cache", temp.File("cache"), "--dumps", temp.File("dumps") })
            start.ArgumentList.Add(arg);

        using Process process = Process.Start(start)!;
        var error = process.StandardError.ReadToEndAsync();
        string output = await process.StandardOutput.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(5));
        Assert.True(process.ExitCode == 0, $"exit code {process.ExitCode}\n{output}\n{await error}");
        Assert.Contains("stress: 432 cycles, 4 fresh processes: no failure", output);
        Assert.Equal(5, output.Split('\n').Count(line => line.Contains(" cycles, 0 failure(s)", StringComparison.Ordinal)));
    }
}
