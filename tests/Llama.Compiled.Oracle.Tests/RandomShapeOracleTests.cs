using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using Xunit;
using Xunit.Abstractions;

namespace Llama.Compiled.Oracle.Tests;

/// <summary>
/// Random-weight models of several shapes (GQA ratios 1, 2, 4, 8; head_dim 8, 64, 128; tied and untied;
/// vocabularies of 512 to 32000), written as GGUF by the project's GgufWriter in F32, F16, Q8_0 and Q4_0,
/// run by the compiled classes and by llama.cpp.
/// </summary>
public sealed class RandomShapeOracleTests(ITestOutputHelper output)
{
    private const int Steps = 32;
    private const int QuantizedTokenSteps = 8;
    private const int Bos = 1;

    /// <summary>How much larger our quantized error (vs F32) may be than llama.cpp's own.</summary>
    private const float QuantizedErrorSlack = 1.5f;

    private static readonly ConcurrentDictionary<string, Lazy<string>> Files = new();
    private static readonly ConcurrentDictionary<string, Lazy<(int[] Tokens, float[][] Logits)>> References = new();

    public static TheoryData<string> AllShapes() => new(OracleShapes.All.Select(s => s.Name));

    public static TheoryData<string> Q4Shapes() => new(OracleShapes.All.Where(s => s.Loaders.ContainsKey(WeightFormat.Q4_0)).Select(s => s.Name));

    [Theory]
    [MemberData(nameof(AllShapes))]
    public void F32GreedyTokensAndLogitsMatchLlamaCpp(string name)
    {
        OracleShape shape = OracleShapes.Get(name);
        string gguf = Gguf(shape, GgufTensorType.F32);
        using var llama = new LlamaCppOracle(gguf);
        using ILlamaModel ours = shape.Loaders[WeightFormat.F32](gguf);
        OracleComparison c = OracleComparison.Run($"{name} F32", ours, llama, Bos, Steps);
        output.WriteLine(c.Summary());
        output.WriteLine(c.Table());
        c.AssertMeaningful();
        c.AssertTokensIdentical(Steps);
        c.AssertLogitsClose(1e-4f);

        // Batched prefill (a separate, tiled code path) of the same 32 tokens: the last token's logits.
        using ILlamaSession session = ours.CreateSession();
        float[] batched = session.Forward(c.Tokens).ToArray();
        float[] expected = c.LlamaLogits[^1];
        float diff = OracleComparison.MaxAbsDiff(batched, expected);
        float scale = expected.Max(Math.Abs);
        output.WriteLine($"{name} F32 batched prefill of {Steps} tokens: max |diff| vs llama.cpp {OracleComparison.F(diff)} ({OracleComparison.F(diff / scale)} × max|logit|)");
        Assert.True(diff <= 1e-4f * scale, $"{name}: batched prefill logits differ from llama.cpp by {diff} (> 1e-4 × {scale})");
    }

    [Fact]
    public void F32WithCopiedWeightsMatchesLlamaCpp()
    {
        // WeightLoading.Copy puts the tensors on cache lines, so a CPU with 512-bit vectors takes the kernels'
        // 512-bit decode loop (this shape's 65 MB stream from memory, which is where the planner emits it).
        OracleShape shape = OracleShapes.Get("gqa1-hd128-v32000-tied");
        string gguf = Gguf(shape, GgufTensorType.F32);
        using var llama = new LlamaCppOracle(gguf);
        using ILlamaModel ours = Gqa1Hd128V32000Tied.Load(gguf, WeightLoading.Copy);
        OracleComparison c = OracleComparison.Run($"{shape.Name} F32 copied", ours, llama, Bos, Steps);
        output.WriteLine(c.Summary());
        c.AssertMeaningful();
        c.AssertTokensIdentical(Steps);
        c.AssertLogitsClose(1e-4f);
    }

    [Theory]
    [MemberData(nameof(AllShapes))]
    public void F16GreedyTokensMatchLlamaCpp(string name)
    {
        // The F32-compiled model converts the F16 file at load; llama.cpp computes F16 × F16-rounded activations.
        OracleShape shape = OracleShapes.Get(name);
        string gguf = Gguf(shape, GgufTensorType.F16);
        using var llama = new LlamaCppOracle(gguf);
        using ILlamaModel ours = shape.Loaders[WeightFormat.F32](gguf);
        OracleComparison c = OracleComparison.Run($"{name} F16 file", ours, llama, Bos, Steps);
        output.WriteLine(c.Summary());
        output.WriteLine(c.Table());
        c.AssertTokensIdentical(Steps);
    }

    [Theory]
    [MemberData(nameof(AllShapes))]
    public void Q8_0MatchesLlamaCpp(string name) => Quantized(name, WeightFormat.Q8_0, GgufTensorType.Q8_0);

    [Theory]
    [MemberData(nameof(Q4Shapes))]
    public void Q4_0MatchesLlamaCpp(string name) => Quantized(name, WeightFormat.Q4_0, GgufTensorType.Q4_0);

    /// <summary>
    /// The class compiled for <paramref name="format"/> on the file stored in that format: the first greedy
    /// tokens equal llama.cpp's, and on the F32 model's token sequence its largest logit error against the
    /// F32 logits is no larger (up to <see cref="QuantizedErrorSlack"/>) than llama.cpp's own.
    /// </summary>
    private void Quantized(string name, WeightFormat format, GgufTensorType type)
    {
        OracleShape shape = OracleShapes.Get(name);
        (int[] reference, float[][] referenceLogits) = F32Reference(shape);
        string gguf = Gguf(shape, type);
        using var llama = new LlamaCppOracle(gguf);
        using ILlamaModel ours = shape.Loaders[format](gguf);

        OracleComparison greedy = OracleComparison.Run($"{name} {format}", ours, llama, Bos, Steps);
        output.WriteLine(greedy.Summary());
        output.WriteLine(greedy.Table());
        greedy.AssertTokensIdentical(QuantizedTokenSteps);

        OracleComparison onF32Tokens = OracleComparison.Run($"{name} {format} on the F32 tokens", ours, llama, Bos, Steps, reference);
        float oursError = OracleComparison.MaxDistance(onF32Tokens.OursLogits, referenceLogits);
        float llamaError = OracleComparison.MaxDistance(onF32Tokens.LlamaLogits, referenceLogits);
        output.WriteLine($"{name} {format}: max |logit − F32 llama.cpp| over {Steps} steps: ours {OracleComparison.F(oursError)}, llama.cpp {OracleComparison.F(llamaError)}, "
            + $"ratio {OracleComparison.F(oursError / llamaError)}; ours vs llama.cpp on the same file {OracleComparison.F(onF32Tokens.LargestDiff)}");
        Assert.True(oursError <= QuantizedErrorSlack * llamaError,
            $"{name} {format}: our max logit error vs F32 {oursError} > {QuantizedErrorSlack} × llama.cpp's {llamaError}");
    }

    /// <summary>The shape's GGUF file in <paramref name="type"/>, written once per test run.</summary>
    internal static string Gguf(OracleShape shape, GgufTensorType type)
    {
        string path = Path.Combine(OraclePaths.Scratch, shape.Name, $"{shape.Name}-{type.ToString().ToLowerInvariant()}.gguf");
        return Files.GetOrAdd(path, p => new Lazy<string>(() => RandomLlama.WriteGguf(p, shape.Shape, shape.Seed, type, shape.Name))).Value;
    }

    /// <summary>llama.cpp's greedy tokens and logits on the F32 file: the reference the quantized errors are measured against.</summary>
    private static (int[] Tokens, float[][] Logits) F32Reference(OracleShape shape) =>
        References.GetOrAdd(shape.Name, _ => new Lazy<(int[], float[][])>(() =>
        {
            using var llama = new LlamaCppOracle(Gguf(shape, GgufTensorType.F32));
            return llama.Greedy(Bos, Steps);
        })).Value;
}
