using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Xunit;
using Xunit.Abstractions;

namespace Llama.Compiled.Oracle.Tests;

/// <summary>
/// The generated kernels choose their instructions when the JIT compiles them (AVX-VNNI, else AVX2, else portable
/// Vector256 code; 512-bit loads and F32 prefill panels where the CPU has them). On one machine only the best path runs,
/// so the quantized oracle tests (and, without AVX-512, the F32 ones) are run again here in child processes with the
/// runtime told to hide instruction sets (<c>DOTNET_EnableAVXVNNI=0</c>, <c>DOTNET_EnableAVX2=0</c>, <c>DOTNET_EnableAVX512=0</c>):
/// the same tests, the same llama.cpp, other kernel code.
/// </summary>
public sealed class InstructionSetTests(ITestOutputHelper output)
{
    /// <summary>Set in the child processes; <see cref="InstructionSetsAreAsConfigured"/> checks the hiding took effect.</summary>
    private const string ExpectedVariable = "LLAMA_COMPILED_EXPECTED_ISA";

    [Theory]
    // The AVX2 path: weights back to int8, maddubs/madd. Every quantized oracle test.
    [InlineData("DOTNET_EnableAVXVNNI", "no-vnni", "FullyQualifiedName~Q8_0|FullyQualifiedName~Q4_0|FullyQualifiedName~KQuantOracleTests|FullyQualifiedName~Q4KMPrefill|DisplayName~MOSTLY_Q4_K_M&FullyQualifiedName~GreedyTokens")]
    // The portable path (software Vector256 here, so slow): stories260K's Q8_0 (single blocks) and a shape with
    // whole groups of 16 blocks and a partial one.
    [InlineData("DOTNET_EnableAVX2", "no-avx2", "FullyQualifiedName~Stories260KOracleTests.Q8_0|DisplayName~gqa3-hd32-h288-ffn928-untied&FullyQualifiedName~MatchesLlamaCpp|FullyQualifiedName~KQuantOracleTests")]
    // The F32 prefill's 256-bit panel kernels (6 rows × 16 tokens): every shape's batched prefill against llama.cpp.
    [InlineData("DOTNET_EnableAVX512", "no-avx512", "FullyQualifiedName~F32GreedyTokensAndLogitsMatchLlamaCpp")]
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

    /// <summary>
    /// In the normal run: what .NET reports about the CPU (the kernels choose their paths by it) matches the flags the
    /// kernel reads from CPUID, in /proc/cpuinfo. In a child process: the runtime really hides what the parent asked
    /// it to hide.
    /// </summary>
    [Fact]
    public void InstructionSetsAreAsConfigured()
    {
        string? expected = Environment.GetEnvironmentVariable(ExpectedVariable);
        string[] hiding = HidingVariables();
        output.WriteLine($"expected: {expected ?? "(the machine's)"}; hiding: {(hiding.Length == 0 ? "nothing" : string.Join(", ", hiding))}; " +
                         $"Avx2 {Avx2.IsSupported}, Fma {Fma.IsSupported}, AvxVnni {AvxVnni.IsSupported}, Avx512F {Avx512F.IsSupported}, " +
                         $"Vector256 {Vector256.IsHardwareAccelerated}, Vector512 {Vector512.IsHardwareAccelerated}");
        switch (expected)
        {
            case "no-vnni":
                Assert.False(AvxVnni.IsSupported);
                Assert.True(Avx2.IsSupported || !Vector256.IsHardwareAccelerated);
                break;
            case "no-avx2":
                Assert.False(Avx2.IsSupported);
                Assert.False(AvxVnni.IsSupported);
                break;
            case "no-avx512":
                Assert.False(Vector512.IsHardwareAccelerated);
                break;
        }

        // The CPU's own answer. Every run checks that .NET reports nothing the CPU lacks; a run that hides nothing
        // checks that it reports everything the CPU has (a path the kernels would silently not take).
        HashSet<string>? flags = CpuFlags();
        if (flags is null)
        {
            Assert.False(OperatingSystem.IsLinux(), "no flags line in /proc/cpuinfo");
            return; // another OS: no independent source here
        }
        bool x86 = flags.Contains("sse2");
        Assert.Equal(x86, X86Base.IsSupported);
        bool v4 = flags.IsSupersetOf(["avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"]); // .NET's AVX-512 baseline
        (string Name, bool Cpu, bool Dotnet)[] sets =
        [
            ("avx2", flags.Contains("avx2"), Avx2.IsSupported),
            ("fma", flags.Contains("fma"), Fma.IsSupported),
            ("avx_vnni", flags.Contains("avx_vnni"), AvxVnni.IsSupported),
            ("avx512f+bw+cd+dq+vl", v4, Avx512F.IsSupported),
        ];
        foreach ((string name, bool cpu, bool dotnet) in sets)
        {
            Assert.True(cpu || !dotnet, $".NET reports {name}, which /proc/cpuinfo does not list");
            if (hiding.Length == 0)
                Assert.True(dotnet == cpu, $"/proc/cpuinfo lists {name} but .NET does not report it (nothing is hidden by DOTNET_Enable*)");
        }
        // 512-bit vectors may be left off on CPUs that slow down under them, but never used without AVX-512.
        Assert.True(!Vector512.IsHardwareAccelerated || Avx512F.IsSupported);
        Assert.Equal(Avx2.IsSupported, Vector256.IsHardwareAccelerated);
    }

    /// <summary>The flags of the first processor in /proc/cpuinfo, or null without one.</summary>
    private static HashSet<string>? CpuFlags()
    {
        if (!File.Exists("/proc/cpuinfo"))
            return null;
        foreach (string line in File.ReadLines("/proc/cpuinfo"))
        {
            // "flags\t\t: fpu vme ..." on x86; ARM has "Features".
            if (line.StartsWith("flags", StringComparison.Ordinal) || line.StartsWith("Features", StringComparison.Ordinal))
                return [.. line[(line.IndexOf(':') + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries)];
        }
        return null;
    }

    /// <summary>Environment variables that make the runtime hide instruction sets (DOTNET_EnableAVX2=0 and the like).</summary>
    private static string[] HidingVariables() =>
        Environment.GetEnvironmentVariables().Keys.Cast<string>()
            .Where(k => k.StartsWith("DOTNET_Enable", StringComparison.OrdinalIgnoreCase) || k.StartsWith("COMPlus_Enable", StringComparison.OrdinalIgnoreCase)
                        || k.Equals("DOTNET_PreferredVectorBitWidth", StringComparison.OrdinalIgnoreCase) || k.Equals("DOTNET_MaxVectorTBitWidth", StringComparison.OrdinalIgnoreCase))
            .Order(StringComparer.Ordinal)
            .ToArray();
}
