using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using Xunit;
using Xunit.Abstractions;

namespace Llama.Compiled.Server.Tests;

/// <summary>Runs only when LLAMA_SERVER_AOT_TEST=1: a NativeAOT publish takes minutes on two cores.</summary>
public sealed class AotPublishFactAttribute : FactAttribute
{
    public AotPublishFactAttribute()
    {
        if (Environment.GetEnvironmentVariable("LLAMA_SERVER_AOT_TEST") != "1")
            Skip = "NativeAOT publish of samples/Server: set LLAMA_SERVER_AOT_TEST=1 (every build already runs the AOT and trim analyzers as errors).";
    }
}

public sealed class AotPublishTests(ITestOutputHelper output)
{
    [AotPublishFact]
    public void Server_publishes_as_NativeAOT_with_no_warnings()
    {
        string outDir = Path.Combine(Path.GetTempPath(), "llama-server-aot-" + Guid.NewGuid().ToString("N"));
        try
        {
            var start = new ProcessStartInfo("dotnet")
            {
                ArgumentList = { "publish", Path.Combine(TestPaths.RepoRoot, "samples", "Server"), "-c", "Release", "-o", outDir },
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            using Process process = Process.Start(start)!;
            var stderr = process.StandardError.ReadToEndAsync();
            string log = process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            log += stderr.Result;
            output.WriteLine(log);
            Assert.Equal(0, process.ExitCode);
            Assert.DoesNotContain(log.Split('\n'), line => line.Contains(": warning ", StringComparison.Ordinal));
            FileInfo binary = new(Path.Combine(outDir, "Server"));
            Assert.True(binary.Exists);
            output.WriteLine($"{binary.Length / 1024.0 / 1024.0:F1} MiB");
        }
        finally
        {
            if (Directory.Exists(outDir))
                Directory.Delete(outDir, recursive: true);
        }
    }
}
