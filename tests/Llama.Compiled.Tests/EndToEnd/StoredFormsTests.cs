using System;
using System.IO;
using Xunit;
using Llama.Compiled.Tools;

namespace Llama.Compiled.Tests;

/// <summary>stories260K compiled for Q8_0 compute (blocks of 32 int8 weights, int8 activations).</summary>
[LlamaModel("stories260K/hf/config.json", Weights = WeightFormat.Q8_0)]
public partial class Stories260KQ8;

/// <summary>stories260K compiled for Q4_0 compute.</summary>
[LlamaModel("stories260K/hf/config.json", Weights = WeightFormat.Q4_0)]
public partial class Stories260KQ4;

/// <summary>stories260K compiled for F16 weights.</summary>
[LlamaModel("stories260K/hf/config.json", Weights = WeightFormat.F16)]
public partial class Stories260KF16;

/// <summary>
/// The same compiled model on stories260K in all four stored forms: the RoPE layouts (rotate-half in
/// the HF safetensors, adjacent pairs in GGUF and llama2.c) must give the same logits as llama2.c.
/// </summary>
public sealed class StoredFormsTests
{
    [Theory]
    [InlineData("hf", 1e-4f)]
    [InlineData("stories260K-f32.gguf", 1e-4f)]
    [InlineData("stories260K.bin", 1e-4f)]
    [InlineData("stories260K-f16.gguf", 0.05f)]   // weights rounded to F16 when stored
    [InlineData("stories260K-q8_0.gguf", 0.5f)]   // weights rounded to Q8_0 when stored, dequantized to F32
    public void F32ComputeMatchesLlama2cOnEveryStoredForm(string file, float tolerance)
    {
        int[] tokens = ReferenceLogitsTests.ReferenceTokens();
        float[] reference = ReferenceLogitsTests.ReferenceLogits();
        using var model = Stories260K.Load(Path.Combine(TestPaths.Stories260K, file));
        using var session = model.CreateSession();
        for (int step = 0; step < tokens.Length; step++)
        {
            ReadOnlySpan<float> logits = session.Forward(tokens[step]);
            float diff = ReferenceLogitsTests.MaxAbsDiff(logits, reference.AsSpan(step * Stories260K.VocabSize, Stories260K.VocabSize));
            Assert.True(diff <= tolerance, $"{file} step {step}: max |diff| {diff}");
            if (step + 1 < tokens.Length)
                Assert.Equal(tokens[step + 1], ReferenceLogitsTests.ArgMax(logits));
        }
    }

    [Theory]
    [InlineData("hf", false)]
    [InlineData("stories260K-f32.gguf", false)]  // F32 read in place from the copy
    [InlineData("stories260K.bin", false)]
    [InlineData("stories260K-f16.gguf", false)]
    [InlineData("stories260K-q8_0.gguf", true)]  // Q8_0 blocks used in place from the copy
    public void CopiedWeightsGiveTheMappedWeightsLogitsExactly(string file, bool q8Compute)
    {
        string path = Path.Combine(TestPaths.Stories260K, file);
        using ILlamaModel mapped = q8Compute ? Stories260KQ8.Load(path, WeightLoading.Map) : Stories260K.Load(path, WeightLoading.Map);
        using ILlamaModel copied = q8Compute ? Stories260KQ8.Load(path, WeightLoading.Copy) : Stories260K.Load(path, WeightLoading.Copy);
        using ILlamaSession mappedSession = mapped.CreateSession();
        using ILlamaSession copiedSession = copied.CreateSession();
        foreach (int token in ReferenceLogitsTests.ReferenceTokens())
            Assert.Equal(mappedSession.Forward(token).ToArray(), copiedSession.Forward(token).ToArray());
    }

    [Theory]
    [InlineData("hf/model.safetensors")]
    [InlineData("stories260K-f32.gguf")]
    [InlineData("stories260K.bin")]
    public void CopiedTensorsStartCacheLines(string file)
    {
        // Every stored tensor of stories260K is a multiple of 64 bytes, so placing the first on a line places all.
        using var weights = ModelWeights.Open(Path.Combine(TestPaths.Stories260K, file), Stories260K.CompiledShape, WeightLoading.Copy);
        Assert.True(weights.GetMatrix("model.embed_tokens.weight", Stories260K.VocabSize, Stories260K.HiddenSize).IsCacheLineAligned);
        Assert.True(weights.GetMatrix("model.layers.4.mlp.down_proj.weight", Stories260K.HiddenSize, Stories260K.IntermediateSize).IsCacheLineAligned);
        Assert.True(weights.GetVector("model.norm.weight", Stories260K.HiddenSize).IsCacheLineAligned);
    }

    [Fact]
    public void AnUndefinedLoadingModeIsRejected()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => Stories260K.Load(Path.Combine(TestPaths.Stories260K, "hf"), (WeightLoading)7));
        Assert.Equal("loading", e.ParamName);
    }

    [Theory]
    [InlineData("stories260K-q8_0.gguf")] // Q8_0 stored: used in place
    [InlineData("hf")]                    // F32 stored: quantized at load
    public void Q8ComputeFollowsTheReferenceGreedyPath(string file)
    {
        int[] tokens = ReferenceLogitsTests.ReferenceTokens();
        float[] reference = ReferenceLogitsTests.ReferenceLogits();
        using var model = Stories260KQ8.Load(Path.Combine(TestPaths.Stories260K, file));
        using var session = model.CreateSession();
        for (int step = 0; step < tokens.Length; step++)
        {
            ReadOnlySpan<float> logits = session.Forward(tokens[step]);
            float diff = ReferenceLogitsTests.MaxAbsDiff(logits, reference.AsSpan(step * Stories260K.VocabSize, Stories260K.VocabSize));
            // llama.cpp's own Q8_0 result is 0.21 from the reference (shared/models/README.md).
            Assert.True(diff <= 0.5f, $"{file} step {step}: max |diff| {diff}");
            if (step + 1 < tokens.Length)
                Assert.Equal(tokens[step + 1], ReferenceLogitsTests.ArgMax(logits));
        }
    }

    [Fact]
    public void F16ComputeStaysCloseToTheReference()
    {
        int[] tokens = ReferenceLogitsTests.ReferenceTokens();
        float[] reference = ReferenceLogitsTests.ReferenceLogits();
        using var f16 = Stories260KF16.Load(TestPaths.Stories260KHf);
        using var session = f16.CreateSession();
        for (int step = 0; step < tokens.Length; step++)
        {
            float diff = ReferenceLogitsTests.MaxAbsDiff(session.Forward(tokens[step]), reference.AsSpan(step * Stories260K.VocabSize, Stories260K.VocabSize));
            Assert.True(diff < 0.05f, $"step {step}: F16 max |diff| {diff}");
        }
    }

    [Theory]
    [InlineData(GgufTensorType.Q4_0)]
    [InlineData(GgufTensorType.Q8_0)]
    public void BlockKernelsMatchF32ComputeOnTheSameQuantizedWeights(GgufTensorType type)
    {
        // The weights are quantized once, into a GGUF; F32 compute dequantizes them, the Q kernels use them in
        // place with int8 activations. What remains between the two is the activations' quantization error.
        string path = Path.Combine(Directory.CreateTempSubdirectory("llc-q").FullName, "model.gguf");
        try
        {
            using (var source = ModelWeights.Open(TestPaths.Stories260KHf, Stories260K.CompiledShape))
            {
                GgufWriter.WriteLlama(path, Stories260K.CompiledShape, name =>
                {
                    bool vector = name.EndsWith("norm.weight", StringComparison.Ordinal);
                    int rows = RowsOf(name);
                    return vector
                        ? source.GetVector(name, Stories260K.HiddenSize).Span.ToArray()
                        : source.GetMatrix(name, rows, RowsOrColsTotal(name) / rows).Span.ToArray();
                }, type, RopeLayout.RotateHalf);
            }
            int[] tokens = ReferenceLogitsTests.ReferenceTokens();
            using var exact = Stories260K.Load(path);
            using ILlamaModel quantized = type == GgufTensorType.Q4_0 ? Stories260KQ4.Load(path) : Stories260KQ8.Load(path);
            using var exactSession = exact.CreateSession();
            using var quantizedSession = quantized.CreateSession();
            float maxDiff = 0;
            foreach (int token in tokens)
                maxDiff = Math.Max(maxDiff, ReferenceLogitsTests.MaxAbsDiff(exactSession.Forward(token), quantizedSession.Forward(token)));
            Assert.True(maxDiff < 0.3f, $"{type}: max |logit diff| between F32 and {type} compute on the same weights: {maxDiff}");
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(path)!, recursive: true);
        }
    }

    private static int RowsOf(string name) => name switch
    {
        _ when name.Contains("embed_tokens") => Stories260K.VocabSize,
        _ when name.Contains("k_proj") || name.Contains("v_proj") => Stories260K.KvHeadCount * Stories260K.HeadDim,
        _ when name.Contains("gate_proj") || name.Contains("up_proj") => Stories260K.IntermediateSize,
        _ => Stories260K.HiddenSize,
    };

    private static int RowsOrColsTotal(string name) => RowsOf(name) * (name.Contains("down_proj") ? Stories260K.IntermediateSize : Stories260K.HiddenSize);

    [Fact]
    public void BatchedPrefillEqualsDecodeForQuantizedCompute()
    {
        int[] tokens = ReferenceLogitsTests.ReferenceTokens();
        using var model = Stories260KQ8.Load(TestPaths.Stories260KHf);
        using var stepwise = model.CreateSession();
        float[] expected = Array.Empty<float>();
        foreach (int token in tokens)
            expected = stepwise.Forward(token).ToArray();
        using var batched = model.CreateSession();
        float[] actual = batched.Forward(tokens).ToArray();
        Assert.True(ReferenceLogitsTests.MaxAbsDiff(actual, expected) <= 1e-4f);
    }
}
