using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using LLama.Native;
using Xunit;
using Xunit.Abstractions;
using Llama.Compiled.Tools;

namespace Llama.Compiled.Oracle.Tests;

/// <summary>
/// <see cref="QuantizationMix"/> against llama.cpp's own quantizer: F32 GGUF files of tiny models are quantized by
/// llama.cpp to each file type, and every tensor's stored type must be the one QuantizationMix names. The layer counts
/// cover <c>use_more_bits</c> (first and last eighth, every third between) and the quantizer's name-sorted layer
/// order (from 11 layers on); the shapes cover row widths 256 divides, widths only 32 divides (fallbacks), a width 32
/// does not divide (F16), GQA ratios 1 to 5, tied and untied classifiers, and llama.cpp's 70B attn_v rule.
/// </summary>
public sealed class QuantizationMixOracleTests(ITestOutputHelper output)
{
    /// <summary>A model's shape for the quantizer: the weights' values do not matter to the formats it picks.</summary>
    public sealed record MixShape(string Name, int Hidden, int Ffn, int Heads, int KvHeads, bool Tied)
    {
        public LlamaModelShape Shape(int layers) =>
            new(Hidden, Ffn, layers, Heads, KvHeads, Hidden / Heads, VocabSize: 320, MaxContext: 64, RmsNormEps: 1e-5f, RopeTheta: 10000f,
                TiedEmbeddings: Tied, BosTokenId: 1, EosTokenIds: [2]);

        public override string ToString() => Name;
    }

    private static readonly MixShape[] Shapes =
    [
        // Every width a multiple of 256.
        new("h256-gqa4-untied", 256, 256, 4, 1, false),
        new("h256-gqa1-tied", 256, 256, 4, 4, true),
        // Widths 32 divides and 256 does not: every K format falls back.
        new("h320-ffn864-gqa1-tied", 320, 864, 5, 5, true),
        // SmolLM2-135M's widths: hidden 576 falls back, FFN 1536 does not (down_proj keeps its K format).
        new("h576-ffn1536-gqa3-untied", 576, 1536, 9, 3, false),
        // FFN 344: down_proj's width is not a multiple of 32, so even the fallback does not fit.
        new("h256-ffn344-gqa4-tied", 256, 344, 4, 1, true),
        // GQA 5 with an untied classifier of width 320 (Q8_0 rather than Q6_K).
        new("h320-ffn512-gqa5-untied", 320, 512, 5, 1, false),
        // The layer sweep's fallback shape, small so that 30 layers quantize quickly: no width a multiple of 256.
        new("h96-ffn288-gqa3-tied", 96, 288, 3, 1, true),
    ];

    private static readonly int[] LayerCounts = [1, 2, 3, 8, 9, 16, 22, 24, 30];

    /// <summary>The shapes and mixes the layer sweep runs at every layer count.</summary>
    private static readonly string[] SweptShapes = ["h256-gqa4-untied", "h96-ffn288-gqa3-tied"];

    private static readonly LLamaFtype[] SweptFtypes = [LLamaFtype.MOSTLY_Q4_K_M, LLamaFtype.MOSTLY_Q4_K_S, LLamaFtype.MOSTLY_Q5_K_M];

    private static readonly LLamaFtype[] AllFtypes =
    [
        LLamaFtype.MOSTLY_Q4_K_M, LLamaFtype.MOSTLY_Q4_K_S, LLamaFtype.MOSTLY_Q5_K_M, LLamaFtype.MOSTLY_Q5_K_S, LLamaFtype.MOSTLY_Q6_K,
        LLamaFtype.MOSTLY_Q8_0, LLamaFtype.MOSTLY_Q4_0, LLamaFtype.MOSTLY_Q4_1, LLamaFtype.MOSTLY_Q5_0, LLamaFtype.MOSTLY_Q5_1, LLamaFtype.MOSTLY_F16,
    ];

    private static readonly ConcurrentDictionary<string, Lazy<string>> SourceFiles = new();

    /// <summary>The mixes whose choices depend on the layer, at every layer count, on a shape without fallbacks and one with.</summary>
    public static TheoryData<string, int, LLamaFtype> LayerSweep()
    {
        var data = new TheoryData<string, int, LLamaFtype>();
        foreach (string shape in SweptShapes)
        {
            foreach (int layers in LayerCounts)
            {
                foreach (LLamaFtype ftype in SweptFtypes)
                    data.Add(shape, layers, ftype);
            }
        }
        return data;
    }

    /// <summary>
    /// Every file type on every shape (3 layers), except the 32-block types on the width 32 does not divide (llama.cpp refuses
    /// those) and the cases the layer sweep already has.
    /// </summary>
    public static TheoryData<string, int, LLamaFtype> EveryFtype()
    {
        var data = new TheoryData<string, int, LLamaFtype>();
        foreach (MixShape shape in Shapes)
        {
            foreach (LLamaFtype ftype in AllFtypes)
            {
                bool swept = SweptShapes.Contains(shape.Name) && SweptFtypes.Contains(ftype);
                if ((shape.Ffn % QuantizationMix.BlockSize == 0 || !Is32BlockFtype(ftype)) && !swept)
                    data.Add(shape.Name, 3, ftype);
            }
        }
        return data;
    }

    /// <summary>80 layers: llama.cpp's 70B rule (Q5_K for the Q4_K attn_v) with GQA, not without (LLaMA 1 65B).</summary>
    public static TheoryData<string, int, LLamaFtype> SeventyB() => new()
    {
        { "h256-gqa4-untied", 80, LLamaFtype.MOSTLY_Q4_K_M },
        { "h256-gqa4-untied", 80, LLamaFtype.MOSTLY_Q4_K_S },
        { "h256-gqa1-tied", 80, LLamaFtype.MOSTLY_Q4_K_S },
    };

    [Theory]
    [MemberData(nameof(LayerSweep))]
    [MemberData(nameof(EveryFtype))]
    [MemberData(nameof(SeventyB))]
    public void EveryTensorHasTheFormatLlamaCppStores(string shapeName, int layers, LLamaFtype ftype)
    {
        MixShape mix = Shapes.Single(s => s.Name == shapeName);
        LlamaModelShape shape = mix.Shape(layers);
        string quantized = Path.Combine(OraclePaths.Scratch, "mix", $"{shapeName}-l{layers}-{LlamaCppQuantizedFiles.FtypeName(ftype)}.gguf");
        LlamaCppQuantizedFiles.Quantize(Source(mix, layers), quantized, ftype);
        AssertStoredFormats(quantized, shape, ftype, $"{shapeName}, {layers} layers, {ftype}");
        File.Delete(quantized);
    }

    /// <summary>The files <see cref="LlamaCppQuantizedFiles"/> hands the end-to-end tests: llama.cpp's formats, and llama.cpp runs them.</summary>
    [Theory]
    [InlineData("gqa2-hd64-ffn768-l4-untied", LLamaFtype.MOSTLY_Q4_K_M)]
    [InlineData("gqa2-hd64-ffn768-l4-untied", LLamaFtype.MOSTLY_Q4_K_S)]
    [InlineData("gqa2-hd64-ffn768-l4-untied", LLamaFtype.MOSTLY_Q5_K_M)]
    [InlineData("gqa2-hd64-ffn768-l4-untied", LLamaFtype.MOSTLY_Q6_K)]
    [InlineData("gqa2-hd64-ffn768-l4-untied", LLamaFtype.MOSTLY_Q4_0)]
    [InlineData("gqa1-hd64-tied", LLamaFtype.MOSTLY_Q4_K_M)]
    [InlineData("gqa3-hd32-h288-ffn928-untied", LLamaFtype.MOSTLY_Q4_K_M)]
    public void QuantizedShapeFilesHoldLlamaCppsFormatsAndRun(string shapeName, LLamaFtype ftype)
    {
        OracleShape shape = OracleShapes.Get(shapeName);
        string path = LlamaCppQuantizedFiles.Get(shapeName, ftype);
        Assert.Same(path, LlamaCppQuantizedFiles.Get(shapeName, ftype));
        AssertStoredFormats(path, shape.Shape, ftype, $"{shapeName} {ftype}");

        using var llama = new Llama.Compiled.LlamaCpp.LlamaCppOracle(path);
        (int[] tokens, float[][] logits) = llama.Greedy(shape.Shape.BosTokenId, 4);
        output.WriteLine($"llama.cpp's greedy tokens: {string.Join(' ', tokens)}");
        Assert.All(logits, step => Assert.All(step, l => Assert.True(float.IsFinite(l))));
    }

    [Fact]
    public void LlamaCppRefusesA32BlockTypeForAWidth32DoesNotDivide()
    {
        // The case where QuantizationMix answers F16 for llama.cpp's file types although llama.cpp writes no file.
        MixShape mix = Shapes.Single(s => s.Name == "h256-ffn344-gqa4-tied");
        string quantized = Path.Combine(OraclePaths.Scratch, "mix", "refused-q4_0.gguf");
        Assert.False(LlamaCppQuantizedFiles.TryQuantize(Source(mix, 2), quantized, LLamaFtype.MOSTLY_Q4_0));
        Assert.Equal(QuantizationFormat.F16, QuantizationMix.TensorFormat(QuantizationFormat.Q4_0, LlamaTensor.Down, 0, 2, 344, 4, true, asLlamaCppFtype: true));
        Assert.Equal(QuantizationFormat.F32, QuantizationMix.TensorFormat(QuantizationFormat.Q4_0, LlamaTensor.Down, 0, 2, 344, 4, true));
    }

    [Fact]
    public void SingleFormatsKeepTheirFormatWhereTheWidthAllowsElseFallBackElseF32()
    {
        // No llama.cpp file type to compare with: the compile options' own meaning (llama-quantize --pure, F32 last).
        QuantizationFormat F(QuantizationFormat f, LlamaTensor t, int columns, bool tied = false) =>
            QuantizationMix.TensorFormat(f, t, 0, 30, columns, 1, tied);
        Assert.Equal(QuantizationFormat.Q4_0, F(QuantizationFormat.Q4_0, LlamaTensor.Classifier, 320));
        Assert.Equal(QuantizationFormat.Q4_0, F(QuantizationFormat.Q4_0, LlamaTensor.TokenEmbedding, 320, tied: true));
        Assert.Equal(QuantizationFormat.F32, F(QuantizationFormat.Q8_0, LlamaTensor.Down, 344));
        Assert.Equal(QuantizationFormat.Q4_K, F(QuantizationFormat.Q4_K, LlamaTensor.Value, 256));
        Assert.Equal(QuantizationFormat.Q4_K, F(QuantizationFormat.Q4_K, LlamaTensor.Classifier, 256));
        Assert.Equal(QuantizationFormat.Q5_0, F(QuantizationFormat.Q4_K, LlamaTensor.Query, 576));
        Assert.Equal(QuantizationFormat.Q5_1, F(QuantizationFormat.Q5_K, LlamaTensor.Query, 576));
        Assert.Equal(QuantizationFormat.Q8_0, F(QuantizationFormat.Q6_K, LlamaTensor.Gate, 576));
        Assert.Equal(QuantizationFormat.F32, F(QuantizationFormat.Q6_K, LlamaTensor.Down, 344));
        Assert.Equal(QuantizationFormat.F16, F(QuantizationFormat.F16, LlamaTensor.Down, 344));
        Assert.Equal(QuantizationFormat.F32, F(QuantizationFormat.Q4_K_M, LlamaTensor.AttentionNorm, 256));
        Assert.Throws<ArgumentOutOfRangeException>(() => QuantizationMix.TensorFormat(QuantizationFormat.Q4_K, LlamaTensor.Query, 0, 2, 256, 1, false, asLlamaCppFtype: true));
    }

    /// <summary>Every tensor of <paramref name="path"/> is stored in the format QuantizationMix names for llama.cpp's <paramref name="ftype"/>.</summary>
    private void AssertStoredFormats(string path, LlamaModelShape shape, LLamaFtype ftype, string label)
    {
        Dictionary<string, uint> stored = LlamaCppQuantizedFiles.ReadTensorTypes(path);
        var mismatches = new List<string>();
        var counts = new SortedDictionary<string, int>(StringComparer.Ordinal);
        foreach ((string name, LlamaTensor tensor, int layer, int columns) in Tensors(shape))
        {
            QuantizationFormat expected = QuantizationMix.TensorFormat(ToFormat(ftype), tensor, layer, shape.LayerCount, columns,
                shape.HeadCount / shape.KvHeadCount, shape.TiedEmbeddings, asLlamaCppFtype: true);
            Assert.True(stored.Remove(name, out uint type), $"llama.cpp's file has no tensor {name}");
            string actual = GgmlTypeName(type);
            string key = $"{GgufStemOf(name)}:{actual}";
            counts[key] = counts.GetValueOrDefault(key) + 1;
            if (actual != expected.ToString())
                mismatches.Add($"{name} (width {columns}): llama.cpp stores {actual}, QuantizationMix says {expected}");
        }
        output.WriteLine($"{label}: " + string.Join(", ", counts.Select(c => $"{c.Key}×{c.Value}")));
        Assert.Empty(stored.Keys);
        Assert.True(mismatches.Count == 0, string.Join(Environment.NewLine, mismatches));
    }

    /// <summary>The F32 source of <paramref name="mix"/> with <paramref name="layers"/> layers, written once per run.</summary>
    private static string Source(MixShape mix, int layers)
    {
        string path = Path.Combine(OraclePaths.Scratch, "mix", $"{mix.Name}-l{layers}-f32.gguf");
        return SourceFiles.GetOrAdd(path, p => new Lazy<string>(() =>
        {
            Directory.CreateDirectory(Path.GetDirectoryName(p)!);
            LlamaModelShape shape = mix.Shape(layers);
            string partial = p + ".partial";
            GgufWriter.WriteLlama(partial, shape, name => Pattern(ElementCount(shape, name)), GgufTensorType.F32,
                vocabulary: RandomLlama.Vocabulary(shape.VocabSize), name: mix.Name);
            File.Move(partial, p, overwrite: true);
            return p;
        })).Value;
    }

    private static readonly ConcurrentDictionary<int, float[]> Patterns = new();

    /// <summary>Cheap, varied, finite weights (a quantizer's choice of format does not depend on them).</summary>
    private static float[] Pattern(int count) => Patterns.GetOrAdd(count, n =>
    {
        var values = new float[n];
        uint state = 2463534242;
        for (int i = 0; i < n; i++)
        {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            values[i] = (state >> 8) / (float)(1 << 24) - 0.5f;
        }
        return values;
    });

    private static int ElementCount(LlamaModelShape s, string hfName)
    {
        int q = s.HeadCount * s.HeadDim, kv = s.KvHeadCount * s.HeadDim;
        return hfName switch
        {
            _ when hfName.EndsWith("embed_tokens.weight", StringComparison.Ordinal) || hfName == "lm_head.weight" => s.VocabSize * s.HiddenSize,
            _ when hfName.EndsWith("norm.weight", StringComparison.Ordinal) => s.HiddenSize,
            _ when hfName.EndsWith("q_proj.weight", StringComparison.Ordinal) || hfName.EndsWith("o_proj.weight", StringComparison.Ordinal) => q * s.HiddenSize,
            _ when hfName.EndsWith("k_proj.weight", StringComparison.Ordinal) || hfName.EndsWith("v_proj.weight", StringComparison.Ordinal) => kv * s.HiddenSize,
            _ => s.IntermediateSize * s.HiddenSize,
        };
    }

    /// <summary>Every tensor of the GGUF file: its name, role, layer (-1 outside the layers) and row width.</summary>
    private static IEnumerable<(string Name, LlamaTensor Tensor, int Layer, int Columns)> Tensors(LlamaModelShape s)
    {
        int q = s.HeadCount * s.HeadDim;
        yield return (LlamaArchitecture.GgufName(LlamaTensor.TokenEmbedding), LlamaTensor.TokenEmbedding, -1, s.HiddenSize);
        for (int l = 0; l < s.LayerCount; l++)
        {
            foreach (LlamaTensor t in LlamaArchitecture.LayerTensors)
                yield return (LlamaArchitecture.GgufName(t, l), t, l, t == LlamaTensor.AttentionOutput ? q : t == LlamaTensor.Down ? s.IntermediateSize : s.HiddenSize);
        }
        yield return (LlamaArchitecture.GgufName(LlamaTensor.FinalNorm), LlamaTensor.FinalNorm, -1, s.HiddenSize);
        if (!s.TiedEmbeddings)
            yield return (LlamaArchitecture.GgufName(LlamaTensor.Classifier), LlamaTensor.Classifier, -1, s.HiddenSize);
    }

    private static string GgufStemOf(string name) => name.StartsWith("blk.", StringComparison.Ordinal) ? name[(name.IndexOf('.', 4) + 1)..] : name;

    private static bool Is32BlockFtype(LLamaFtype ftype) =>
        ftype is LLamaFtype.MOSTLY_Q8_0 or LLamaFtype.MOSTLY_Q4_0 or LLamaFtype.MOSTLY_Q4_1 or LLamaFtype.MOSTLY_Q5_0 or LLamaFtype.MOSTLY_Q5_1;

    private static QuantizationFormat ToFormat(LLamaFtype ftype) => ftype switch
    {
        LLamaFtype.MOSTLY_F16 => QuantizationFormat.F16,
        LLamaFtype.MOSTLY_Q8_0 => QuantizationFormat.Q8_0,
        LLamaFtype.MOSTLY_Q4_0 => QuantizationFormat.Q4_0,
        LLamaFtype.MOSTLY_Q4_1 => QuantizationFormat.Q4_1,
        LLamaFtype.MOSTLY_Q5_0 => QuantizationFormat.Q5_0,
        LLamaFtype.MOSTLY_Q5_1 => QuantizationFormat.Q5_1,
        LLamaFtype.MOSTLY_Q6_K => QuantizationFormat.Q6_K,
        LLamaFtype.MOSTLY_Q4_K_M => QuantizationFormat.Q4_K_M,
        LLamaFtype.MOSTLY_Q4_K_S => QuantizationFormat.Q4_K_S,
        LLamaFtype.MOSTLY_Q5_K_M => QuantizationFormat.Q5_K_M,
        LLamaFtype.MOSTLY_Q5_K_S => QuantizationFormat.Q5_K_S,
        _ => throw new ArgumentOutOfRangeException(nameof(ftype), ftype, null),
    };

    /// <summary>ggml's names of its type numbers (<c>enum ggml_type</c>), as QuantizationFormat spells them.</summary>
    private static string GgmlTypeName(uint type) => type switch
    {
        0 => "F32", 1 => "F16", 2 => "Q4_0", 3 => "Q4_1", 6 => "Q5_0", 7 => "Q5_1", 8 => "Q8_0",
        10 => "Q2_K", 11 => "Q3_K", 12 => "Q4_K", 13 => "Q5_K", 14 => "Q6_K", 15 => "Q8_K", 30 => "BF16",
        _ => $"ggml type {type}",
    };
}
