using System;
using System.IO;
using Xunit;
using Xunit.Abstractions;
using Llama.Compiled.LlamaCpp;

namespace Llama.Compiled.Oracle.Tests;

/// <summary>
/// The real stories260K in its three stored GGUF forms (../shared/models/stories260K), compiled from its
/// Hugging Face config.json, against llama.cpp on the same files.
/// </summary>
public sealed class Stories260KOracleTests(ITestOutputHelper output)
{
    private const int Steps = 32;
    private const int Bos = 1;

    private static string Gguf(string type) => Path.Combine(OraclePaths.Stories260K, $"stories260K-{type}.gguf");

    [Fact]
    public void F32GgufGreedyTokensAndLogitsMatchLlamaCpp()
    {
        using var llama = new LlamaCppOracle(Gguf("f32"));
        using var ours = Stories260K.Load(Gguf("f32"));
        OracleComparison c = OracleComparison.Run("stories260K f32.gguf", ours, llama, Bos, Steps);
        output.WriteLine(c.Summary());
        output.WriteLine(c.Table());
        c.AssertTokensIdentical(Steps, maxNearTies: 0);
        c.AssertLogitsClose(1e-4f);
    }

    [Fact]
    public void HuggingFaceFolderMatchesLlamaCppOnTheF32Gguf()
    {
        // The rotate-half (safetensors) and adjacent-pair (GGUF) RoPE layouts must give the same model.
        using var llama = new LlamaCppOracle(Gguf("f32"));
        using var ours = Stories260K.Load(Path.Combine(OraclePaths.Stories260K, "hf"));
        OracleComparison c = OracleComparison.Run("stories260K hf/ vs llama.cpp f32.gguf", ours, llama, Bos, Steps);
        output.WriteLine(c.Summary());
        c.AssertTokensIdentical(Steps, maxNearTies: 0);
        c.AssertLogitsClose(1e-4f);
    }

    [Fact]
    public void F16GgufGreedyTokensMatchLlamaCpp()
    {
        using var llama = new LlamaCppOracle(Gguf("f16"));
        using var ours = Stories260K.Load(Gguf("f16"));
        OracleComparison c = OracleComparison.Run("stories260K f16.gguf", ours, llama, Bos, Steps);
        output.WriteLine(c.Summary());
        output.WriteLine(c.Table());
        c.AssertTokensIdentical(Steps, maxNearTies: 0);
    }

    [Fact]
    public void LlamaCppRewindContinuesAsIfTheLaterTokensWereNeverEvaluated()
    {
        // LlamaBench --depth rewinds llama.cpp's cache between runs. Were the positions from 3 on left in it, token 400 at
        // position 3 would meet the old token there (attended twice, or refused by llama_decode).
        using var llama = new LlamaCppOracle(Gguf("f32"));
        int[] prompt = [Bos, 300, 301, 302, 303, 304];
        llama.Evaluate(prompt.AsSpan(0, 3));
        float[] fresh = llama.Forward(400);
        llama.Reset();
        llama.Evaluate(prompt);
        llama.Rewind(3);
        Assert.Equal(3, llama.Position);
        float[] rewound = llama.Forward(400);
        Assert.Equal(4, llama.Position);
        float distance = OracleComparison.MaxDistance([rewound], [fresh]);
        output.WriteLine($"max |logit after Rewind(3) − logit of a fresh prefix|: {OracleComparison.F(distance)}");
        Assert.True(distance <= 1e-4f, $"logits after Rewind(3) differ from a fresh prefix's by {distance}");
    }

    [Fact]
    public void Q8_0GgufFirstTokensMatchLlamaCppAndErrorIsNoLargerThanLlamaCpps()
    {
        using var llamaF32 = new LlamaCppOracle(Gguf("f32"));
        (int[] reference, float[][] referenceLogits) = llamaF32.Greedy(Bos, Steps);

        using var llama = new LlamaCppOracle(Gguf("q8_0"));
        using var ours = Stories260KQ8.Load(Gguf("q8_0"));
        OracleComparison greedy = OracleComparison.Run("stories260K q8_0.gguf (Q8_0 kernels)", ours, llama, Bos, Steps);
        output.WriteLine(greedy.Summary());
        output.WriteLine(greedy.Table());
        greedy.AssertTokensIdentical(8, maxNearTies: 0);

        OracleComparison onF32Tokens = OracleComparison.Run("stories260K q8_0.gguf on the f32 tokens", ours, llama, Bos, Steps, reference);
        float oursError = OracleComparison.MaxDistance(onF32Tokens.OursLogits, referenceLogits);
        float llamaError = OracleComparison.MaxDistance(onF32Tokens.LlamaLogits, referenceLogits);
        output.WriteLine($"max |logit − F32 llama.cpp| over {Steps} steps: ours {OracleComparison.F(oursError)}, llama.cpp {OracleComparison.F(llamaError)}, ratio {OracleComparison.F(oursError / llamaError)}");
        Assert.True(oursError <= 1.5f * llamaError,
            $"Q8_0 error vs F32: ours {oursError} > 1.5 × llama.cpp's {llamaError}");
    }
}
