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
/// quantizer (Q4_K_M, Q4_K_S, Q5_K_M, Q5_K_S, Q6_K, Q8_0, Q4_0, Q4_1, per-tensor mixes and fallbacks included), run by the classes
/// compiled for that mix. Greedy tokens equal llama.cpp's for 16 steps, and on the F32 model's tokens the RMS logit error
/// against the F32 logits is within 1.05× llama.cpp's own on the same file (the largest one within 1.25×).
/// </summary>
public sealed class LlamaCppMixOracleTests(ITestOutputHelper output)
{
    private const int Steps = 16;
    private const int Bos = 1;

    /// <summary>
    /// Both engines compute the same integer dot products on the same blocks; only float rounding may differ: our RMS
    /// logit error against the F32 logits is within this factor of llama.cpp's.
    /// </summary>
    private const float ErrorSlack = 1.05f;

    /// <summary>
    /// The largest single logit error may differ more: the two engines sum a row's blocks in different orders (llama.cpp
    /// per 4-product lane, then across lanes; ours per row, block after block), and where that flips the int8 rounding of
    /// an activation the next layers carry it (measured: qwen2-gqa2-h256 Q8_0, max 0.414 against 0.374, RMS 0.102 both).
    /// </summary>
    private const float MaxErrorSlack = 1.25f;

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
        static double Rms(float[][] logits, float[][] reference) =>
            Math.Sqrt(logits.Zip(reference, (l, r) => l.Zip(r, (a, b) => (double)(a - b) * (a - b)).Sum()).Sum() / logits.Sum(l => l.Length));
        double oursRms = Rms(onF32Tokens.OursLogits, referenceLogits), llamaRms = Rms(onF32Tokens.LlamaLogits, referenceLogits);
        output.WriteLine($"{label}: RMS |logit − F32|: ours {oursRms:G3}, llama.cpp {llamaRms:G3}");
        output.WriteLine($"{label}: max |logit − F32| over {Steps} steps: ours {OracleComparison.F(oursError)}, llama.cpp {OracleComparison.F(llamaError)}, "
            + $"ratio {OracleComparison.F(oursError / llamaError)}; ours vs llama.cpp on the same file {OracleComparison.F(onF32Tokens.LargestDiff)}");
        Assert.True(oursRms <= ErrorSlack * llamaRms, $"{label}: our RMS logit error vs F32 {oursRms} > {ErrorSlack} × llama.cpp's {llamaRms}");
        Assert.True(oursError <= MaxErrorSlack * llamaError, $"{label}: our max logit error vs F32 {oursError} > {MaxErrorSlack} × llama.cpp's {llamaError}");
    }

    public static TheoryData<string, LLamaFtype> KernelLayoutCases()
    {
        var data = new TheoryData<string, LLamaFtype>();
        foreach (string shape in LlamaCppMixModels.Loaders.Keys.Select(k => k.Shape).Distinct())
        {
            data.Add(shape, LLamaFtype.MOSTLY_Q8_0);
            data.Add(shape, LLamaFtype.MOSTLY_Q4_0);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(KernelLayoutCases))]
    public void KernelLayoutPrefillEqualsTokenByTokenDecode(string shapeName, LLamaFtype ftype)
    {
        // A prefill runs the Q8_0/Q4_0 tiles (16 rows × 4 tokens; 37 tokens also take the one-token path for the last
        // ones), decode the one-token group products: the same integer sums and the same float operations in the same
        // order, so the logits agree to float rounding (the int8 requantization of every activation would amplify any
        // other order into visible differences).
        AssertPrefillEqualsTokenByTokenDecode(shapeName, ftype);
    }

    public static TheoryData<string> Q4KMShapes()
    {
        var data = new TheoryData<string>();
        foreach (string shape in LlamaCppMixModels.Loaders.Keys.Select(k => k.Shape).Distinct())
            data.Add(shape);
        return data;
    }

    [Theory]
    [MemberData(nameof(Q4KMShapes))]
    public void Q4KMPrefillEqualsTokenByTokenDecode(string shapeName)
    {
        // The decode steps match llama.cpp (above); a prefill runs the other Q4_K products of the kernel layout (tiles of
        // 16 rows × 4 tokens, the tokens after the last tile one at a time; 37 tokens take both) with the same integer
        // sums and the same float operations in the same order per super-block, so the logits agree to float rounding.
        // (Q4_K_S and Q8_0 are not held to this: their Q5_K row products and Q8_0 tiles sum in another order than
        // decode does, and the int8 requantization of every activation amplifies those roundings.)
        AssertPrefillEqualsTokenByTokenDecode(shapeName, LLamaFtype.MOSTLY_Q4_K_M);
    }

    /// <summary>A 37-token prompt's logits from one prefill and from 37 decode steps, within float rounding.</summary>
    private void AssertPrefillEqualsTokenByTokenDecode(string shapeName, LLamaFtype ftype)
    {
        string gguf = LlamaCppQuantizedFiles.Get(shapeName, ftype);
        using ILlamaModel ours = LlamaCppMixModels.Loaders[(shapeName, LlamaCppMixModels.Formats[ftype])](gguf);
        var random = new Random(37);
        int[] prompt = Enumerable.Range(0, 37).Select(_ => random.Next(ours.Shape.VocabSize)).ToArray();
        using ILlamaSession batched = ours.CreateSession();
        using ILlamaSession stepwise = ours.CreateSession();
        float[] fromPrefill = batched.Forward(prompt).ToArray();
        float[] fromDecode = [];
        foreach (int token in prompt)
            fromDecode = stepwise.Forward(token).ToArray();
        float largest = fromDecode.Max(MathF.Abs), diff = OracleComparison.MaxAbsDiff(fromPrefill, fromDecode);
        output.WriteLine($"{shapeName} {LlamaCppQuantizedFiles.FtypeName(ftype)}: prefill vs decode {diff} (largest logit {largest})");
        Assert.True(diff <= 1e-4f * Math.Max(1f, largest), $"prefill and decode differ by {diff} (largest logit {largest})");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void QuantizingTheF32FileAtLoadGivesLlamaCppsBlocks(string shapeName, LLamaFtype ftype)
    {
        // A model compiled for a mix and loaded from F32 weights quantizes every matrix at load, to the format llama.cpp's
        // rules pick, with the reference quantizers: the blocks equal the ones llama.cpp's quantizer wrote, byte for byte.
        WeightFormat format = LlamaCppMixModels.Formats[ftype];
        OracleShape shape = OracleShapes.Get(shapeName);
        LlamaModelShape s = shape.Shape;
        using ModelWeights fromF32 = ModelWeights.Open(RandomShapeOracleTests.Gguf(shape, GgufTensorType.F32), s);
        using ModelWeights fromLlamaCpp = ModelWeights.Open(LlamaCppQuantizedFiles.Get(shapeName, ftype), s);
        int q = s.HeadCount * s.HeadDim, kv = s.KvHeadCount * s.HeadDim, compared = 0;
        void Compare(string name, LlamaTensor tensor, int layer, int rows, int cols)
        {
            var stored = (WeightFormat)QuantizationMix.TensorFormat((QuantizationFormat)format, tensor, layer, s.LayerCount, cols,
                s.HeadCount / s.KvHeadCount, s.TiedEmbeddings);
            if (stored == WeightFormat.F16)
                stored = WeightFormat.F32; // llama.cpp's F16 fallback; a config.json model computes such a matrix in F32
            Assert.True(fromLlamaCpp.GetPackedMatrix(name, rows, cols, stored).Bytes.SequenceEqual(fromF32.GetPackedMatrix(name, rows, cols, stored).Bytes) || stored == WeightFormat.F32,
                $"{name} as {stored}");
            compared++;
        }
        for (int layer = 0; layer < s.LayerCount; layer++)
        {
            string prefix = LlamaArchitecture.HuggingFaceLayerPrefix(layer);
            Compare(prefix + "self_attn.q_proj.weight", LlamaTensor.Query, layer, q, s.HiddenSize);
            Compare(prefix + "self_attn.k_proj.weight", LlamaTensor.Key, layer, kv, s.HiddenSize);
            Compare(prefix + "self_attn.v_proj.weight", LlamaTensor.Value, layer, kv, s.HiddenSize);
            Compare(prefix + "self_attn.o_proj.weight", LlamaTensor.AttentionOutput, layer, s.HiddenSize, q);
            Compare(prefix + "mlp.gate_proj.weight", LlamaTensor.Gate, layer, s.IntermediateSize, s.HiddenSize);
            Compare(prefix + "mlp.up_proj.weight", LlamaTensor.Up, layer, s.IntermediateSize, s.HiddenSize);
            Compare(prefix + "mlp.down_proj.weight", LlamaTensor.Down, layer, s.HiddenSize, s.IntermediateSize);
        }
        Compare(s.TiedEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight", LlamaTensor.Classifier, -1, s.VocabSize, s.HiddenSize);
        Assert.Equal(7 * s.LayerCount + 1, compared);
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
