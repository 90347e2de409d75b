using System;
using System.Diagnostics;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using System.Threading;
using System.Threading.Tasks;
using Xunit;
using Xunit.Abstractions;

namespace Llama.Compiled.Tests.Kernels;

/// <summary>
/// <see cref="BlockKernelsTests"/> and <see cref="Formats.QuantizedRowsTests"/> again in child processes with the runtime told to hide an instruction set, so that
/// every path of the primitives runs on this machine: without AVX-VNNI (MultiplyAddQuads by AVX2 maddubs), without AVX2
/// (the portable MultiplyAddQuads), without AVX (the portable Sum4). As the oracle project's InstructionSetTests do for
/// the generated kernels. <see cref="TokenPanelTests"/> and <see cref="PanelPrefillTests"/> run too: without AVX-512 the
/// F32 prefill takes its 256-bit panel kernels, without AVX the panels are packed by the portable transpose (as are the
/// Q6_K rows <see cref="Q6KGroupsTests"/> checks).
/// </summary>
public sealed class PrimitiveInstructionSetTests(ITestOutputHelper output)
{
    /// <summary>Set in the child processes; <see cref="InstructionSetsAreAsConfigured"/> checks that the hiding took effect.</summary>
    private const string ExpectedVariable = "LLAMA_COMPILED_EXPECTED_ISA";

    [Theory]
    [InlineData("DOTNET_EnableAVXVNNI", "no-vnni")]
    [InlineData("DOTNET_EnableAVX2", "no-avx2")]
    [InlineData("DOTNET_EnableAVX", "no-avx")]
    [InlineData("DOTNET_EnableAVX512", "no-avx512")]
    public async Task PrimitivesMatchTheirReferencesWithoutTheInstructionSet(string variable, string expected)
    {
        if (Environment.GetEnvironmentVariable(ExpectedVariable) is not null)
            return; // already a child process: do not recurse

        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = TestPaths.RepoRoot,
        };
        string filter = $"FullyQualifiedName~{typeof(BlockKernelsTests).FullName}|FullyQualifiedName~{typeof(Formats.QuantizedRowsTests).FullName}"
            + $"|FullyQualifiedName~{typeof(TokenPanelTests).FullName}|FullyQualifiedName~{typeof(PanelPrefillTests).FullName}|FullyQualifiedName~{typeof(Q6KGroupsTests).FullName}|FullyQualifiedName~{nameof(InstructionSetsAreAsConfigured)}";
        foreach (string arg in new[] { "test", typeof(PrimitiveInstructionSetTests).Assembly.Location, "--filter", filter })
            start.ArgumentList.Add(arg);
        start.Environment[variable] = "0";
        start.Environment[ExpectedVariable] = expected;
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";

        using Process process = Process.Start(start)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync(), stderr = process.StandardError.ReadToEndAsync();
        using (var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3)))
        {
            try
            {
                await process.WaitForExitAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                process.Kill(entireProcessTree: true);
                Assert.Fail($"the child test run with {variable}=0 did not finish in 3 minutes:\n{await stdout}");
            }
        }
        string text = await stdout + await stderr;
        output.WriteLine(text);
        Assert.True(process.ExitCode == 0, $"{variable}=0: the child test run failed (exit {process.ExitCode}):\n{text}");
        // A filter that matched nothing would pass too: require the primitives' tests to have run.
        Assert.Matches(@"Passed:\s+(1\d|[2-9]\d)", text);
    }

    /// <summary>In a child process: the runtime really hides what the parent asked it to hide.</summary>
    [Fact]
    public void InstructionSetsAreAsConfigured()
    {
        switch (Environment.GetEnvironmentVariable(ExpectedVariable))
        {
            case "no-vnni":
                Assert.False(AvxVnni.IsSupported);
                break;
            case "no-avx2":
                Assert.False(Avx2.IsSupported);
                Assert.False(AvxVnni.IsSupported);
                break;
            case "no-avx":
                Assert.False(Avx.IsSupported);
                Assert.False(Vector256.IsHardwareAccelerated);
                break;
            case "no-avx512":
                Assert.False(Vector512.IsHardwareAccelerated);
                break;
        }
    }
}
