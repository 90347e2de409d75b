using System;
using System.Linq;
using Xunit;

namespace Llama.Compiled.Generator.Tests;

/// <summary>
/// The generated code of real models, compared with golden files in Snapshots/ (see <see cref="Snapshot"/>).
/// Each also compiles the user code with the generated code and requires zero warnings.
/// </summary>
public sealed class SnapshotTests
{
    [Fact]
    public void Stories260K() =>
        VerifyModel(nameof(Stories260K), "Stories260K", GeneratorHarness.Stories260KConfig());

    [Fact]
    public void Stories15M() =>
        VerifyModel(nameof(Stories15M), "Stories15M", GeneratorHarness.Config("stories15M.json"));

    [Fact]
    public void TinyLlama() =>
        VerifyModel(nameof(TinyLlama), "TinyLlama", GeneratorHarness.Config("TinyLlama-1.1B-Chat-v1.0.json"));

    [Fact]
    public void Llama32_1B() =>
        VerifyModel(nameof(Llama32_1B), "Llama32", GeneratorHarness.Config("Llama-3.2-1B.json"), maxContext: 4096);

    [Fact]
    public void Qwen25_05B() =>
        VerifyModel(nameof(Qwen25_05B), "Qwen25", GeneratorHarness.Config("Qwen2.5-0.5B.json"));

    [Fact]
    public void TinyLlamaQ8_0() =>
        VerifyModel(nameof(TinyLlamaQ8_0), "TinyLlamaQ8", GeneratorHarness.Config("TinyLlama-1.1B-Chat-v1.0.json"), weights: "Q8_0");

    [Fact]
    public void Stories260KQ4_0() =>
        VerifyModel(nameof(Stories260KQ4_0), "Stories260KQ4", GeneratorHarness.Stories260KConfig(), weights: "Q4_0");

    [Fact]
    public void TinyLlamaQ4_K_M() =>
        VerifyModel(nameof(TinyLlamaQ4_K_M), "TinyLlamaQ4KM", GeneratorHarness.Config("TinyLlama-1.1B-Chat-v1.0.json"), weights: "Q4_K_M");

    [Fact]
    public void Qwen25_05B_Q5_K_M() =>
        VerifyModel(nameof(Qwen25_05B_Q5_K_M), "Qwen25Q5KM", GeneratorHarness.Config("Qwen2.5-0.5B.json"), weights: "Q5_K_M");

    [Fact]
    public void SnapshotFolderIsInTheSourceTree()
    {
        Assert.EndsWith(System.IO.Path.Combine("tests", "Llama.Compiled.Generator.Tests", "Snapshots"), Snapshot.Folder);
        Assert.DoesNotContain(System.IO.Path.DirectorySeparatorChar + "bin" + System.IO.Path.DirectorySeparatorChar, Snapshot.Folder);
    }

    [Fact]
    public void FirstDifferenceNamesTheLine()
    {
        Assert.Equal("first difference at line 2: expected \"b\", received \"c\"", Snapshot.FirstDifference("a\nb\n", "a\nc\n"));
        Assert.Equal("first difference at line 3: expected <end of file>, received \"x\"", Snapshot.FirstDifference("a\nb", "a\nb\nx"));
    }

    private static void VerifyModel(string testName, string className, string config, int maxContext = 0, string? weights = null)
    {
        string arguments = "\"models/config.json\"" + (maxContext > 0 ? $", MaxContext = {maxContext}" : "")
            + (weights is null ? "" : $", Weights = WeightFormat.{weights}");
        GeneratorRun run = GeneratorHarness.Run(
            GeneratorHarness.ModelSource(arguments, $"public partial class {className};"),
            ("/project/models/config.json", config));

        Assert.True(run.GeneratorDiagnostics.IsEmpty,
            "The generator reported diagnostics:" + Environment.NewLine + string.Join(Environment.NewLine, run.GeneratorDiagnostics));
        Snapshot.Verify(nameof(SnapshotTests) + "." + testName, run);
        Assert.True(run.CompilationDiagnostics.IsEmpty,
            "The generated code does not compile cleanly:" + Environment.NewLine + string.Join(Environment.NewLine, run.CompilationDiagnostics.Take(20)));
    }
}
