using System;
using System.Collections.Concurrent;
using System.Linq;
using LLama.Native;
using Llama.Compiled.LlamaCpp;
using Xunit;
using Xunit.Abstractions;

namespace Llama.Compiled.Oracle.Tests;

/// <summary>
/// llama.cpp as the oracle on its own files: random-weight models written as F32 GGUF and quantized by llama.cpp's own
/// quantizer (Q4_K_M, Q4_K_S, Q5_K_M, Q6_K, Q8_0, Q4_0, per-tensor mixes and fallbacks included), run by the classes
/// compiled for that mix. Greedy tokens equal llama.cpp's for 16 steps, and on the F32 model's tokens the largest logit
/// error against the F32 logits is within 1.05× llama.cpp's own on the same file.
/// </summary>
public sealed class LlamaCppMixOracleTests(ITestOutputHelper output)
{
    private const int Steps = 16;
    private const int Bos = 1;

    /// <summary>Both engines compute the same integer dot products on the same blocks; only float rounding may differ.</summary>
    private const float ErrorSlack = 1.05f;

    private static readonly ConcurrentDictionary<string, Lazy<(int[] Tokens, float[][] Logits)>> References = new();

    public static TheoryData<string, LLamaFtype> Cases()
    {
        var data = new TheoryData<string, LLamaFtype>();
        foreach (string shape in LlamaCppMixModels.Loaders.Keys.Select(k => k.Shape).Distinct())
        {
            foreach (LLamaFtype ftype in LlamaCppMixModels.Formats.Keys)
                data.Add(shape, ftype);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void GreedyTokensAndLogitErrorMatchLlamaCpp(string shapeName, LLamaFtype ftype)
    {
        WeightFormat format = LlamaCppMixModels.Formats[ftype];
        string gguf = LlamaCppQuantizedFiles.Get(shapeName, ftype);
        (int[] reference, float[][] referenceLogits) = F32Reference(shapeName);
        using var llama = new LlamaCppOracle(gguf);
        using ILlamaModel ours = LlamaCppMixModels.Loaders[(shapeName, format)](gguf);
        string label = $"{shapeName} {LlamaCppQuantizedFiles.FtypeName(ftype)}";

        OracleComparison greedy = OracleComparison.Run(label, ours, llama, Bos, Steps);
        output.WriteLine(greedy.Summary());
        output.WriteLine(greedy.Table());
        greedy.AssertMeaningful();
        greedy.AssertTokensIdentical(Steps);

        OracleComparison onF32Tokens = OracleComparison.Run($"{label} on the F32 tokens", ours, llama, Bos, Steps, reference);
        float oursError = OracleComparison.MaxDistance(onF32Tokens.OursLogits, referenceLogits);
        float llamaError = OracleComparison.MaxDistance(onF32Tokens.LlamaLogits, referenceLogits);
        output.WriteLine($"{label}: max |logit − F32| over {Steps} steps: ours {OracleComparison.F(oursError)}, llama.cpp {OracleComparison.F(llamaError)}, "
            + $"ratio {OracleComparison.F(oursError / llamaError)}; ours vs llama.cpp on the same file {OracleComparison.F(onF32Tokens.LargestDiff)}");
        Assert.True(oursError <= ErrorSlack * llamaError, $"{label}: our max logit error vs F32 {oursError} > {ErrorSlack} × llama.cpp's {llamaError}");
    }

    [Fact]
    public void AFileOfAnotherMixIsRefusedNamingTheTensorAndBothFormats()
    {
        // llama.cpp's Q4_K_M file loaded into the class compiled for Q5_K_M: no quantized tensor is converted into another.
        string gguf = LlamaCppQuantizedFiles.Get("gqa2-hd64-ffn768-l4-untied", LLamaFtype.MOSTLY_Q4_K_M);
        var e = Assert.Throws<ModelFormatException>(() => LlamaCppMixModels.Loaders[("gqa2-hd64-ffn768-l4-untied", WeightFormat.Q5_K_M)](gguf));
        Assert.Contains("Q4_K", e.Message);
        Assert.Contains("Q5_K", e.Message);
        Assert.Contains("model.layers.", e.Message);
    }

    /// <summary>llama.cpp's greedy tokens and logits on the F32 file: the reference the quantized errors are measured against.</summary>
    private static (int[] Tokens, float[][] Logits) F32Reference(string shapeName) =>
        References.GetOrAdd(shapeName, _ => new Lazy<(int[], float[][])>(() =>
        {
            using var llama = new LlamaCppOracle(RandomShapeOracleTests.Gguf(OracleShapes.Get(shapeName), GgufTensorType.F32));
            return llama.Greedy(Bos, Steps);
        })).Value;
}
