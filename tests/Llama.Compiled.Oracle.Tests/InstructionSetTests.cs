using System;
using System.Diagnostics;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Xunit;
using Xunit.Abstractions;

namespace Llama.Compiled.Oracle.Tests;

/// <summary>
/// The generated kernels choose their instructions when the JIT compiles them (AVX-VNNI, else AVX2, else portable
/// Vector256 code; 512-bit loads where the CPU has them). On one machine only the best path runs, so the quantized
/// oracle tests are run again here in child processes with the runtime told to hide instruction sets
/// (<c>DOTNET_EnableAVXVNNI=0</c>, <c>DOTNET_EnableAVX2=0</c>): the same tests, the same llama.cpp, other kernel code.
/// </summary>
public sealed class InstructionSetTests(ITestOutputHelper output)
{
    /// <summary>Set in the child processes; <see cref="InstructionSetsAreAsConfigured"/> checks the hiding took effect.</summary>
    private const string ExpectedVariable = "LLAMA_COMPILED_EXPECTED_ISA";

    [Theory]
    // The AVX2 path: weights back to int8, maddubs/madd. Every quantized oracle test.
    [InlineData("DOTNET_EnableAVXVNNI", "no-vnni", "FullyQualifiedName~Q8_0|FullyQualifiedName~Q4_0")]
    // The portable path (software Vector256 here, so slow): stories260K's Q8_0 (single blocks) and a shape with
    // whole groups of 16 blocks and a partial one.
    [InlineData("DOTNET_EnableAVX2", "no-avx2", "FullyQualifiedName~Stories260KOracleTests.Q8_0|DisplayName~gqa3-hd32-h288-ffn928-untied&FullyQualifiedName~MatchesLlamaCpp")]
    public async System.Threading.Tasks.Task QuantizedKernelsMatchLlamaCppWithoutTheInstructionSet(string variable, string expected, string filter)
    {
        if (Environment.GetEnvironmentVariable(ExpectedVariable) is not null)
            return; // already a child process: do not recurse

        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = OraclePaths.RepoRoot,
        };
        foreach (string arg in new[] { "test", typeof(InstructionSetTests).Assembly.Location, "--filter", $"({filter})|FullyQualifiedName~{nameof(InstructionSetsAreAsConfigured)}" })
            start.ArgumentList.Add(arg);
        start.Environment[variable] = "0";
        start.Environment[ExpectedVariable] = expected;
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";

        using Process process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using (var timeout = new System.Threading.CancellationTokenSource(TimeSpan.FromMinutes(5)))
        {
            try
            {
                await process.WaitForExitAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                process.Kill(entireProcessTree: true);
                Assert.Fail($"the child test run with {variable}=0 did not finish in 5 minutes:\n{await stdout}");
            }
        }
        string text = await stdout + await stderr;
        output.WriteLine(text);
        Assert.True(process.ExitCode == 0, $"{variable}=0: the child test run failed (exit {process.ExitCode}):\n{text}");
        // A filter that matched nothing would pass too: require the tests to have run.
        Assert.Matches(@"Passed:\s+([3-9]|\d\d)", text);
    }

    /// <summary>In a child process: the runtime really hides what the parent asked it to hide.</summary>
    [Fact]
    public void InstructionSetsAreAsConfigured()
    {
        switch (Environment.GetEnvironmentVariable(ExpectedVariable))
        {
            case "no-vnni":
                Assert.False(AvxVnni.IsSupported);
                Assert.True(Avx2.IsSupported || !Vector256.IsHardwareAccelerated);
                break;
            case "no-avx2":
                Assert.False(Avx2.IsSupported);
                Assert.False(AvxVnni.IsSupported);
                break;
        }
    }
}
