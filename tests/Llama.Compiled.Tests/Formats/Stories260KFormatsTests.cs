using System;
using System.Collections.Generic;
using System.IO;
using Xunit;
using Llama.Compiled.CompilerServices;

namespace Llama.Compiled.Tests.Formats;

/// <summary>The four stored forms of stories260K against its Hugging Face safetensors.</summary>
public sealed class Stories260KFormatsTests
{
    internal static readonly LlamaModelShape Shape = new(64, 172, 5, 8, 4, 8, 512, 512, 1e-5f, 10000f, true, 1, [2]);

    internal static string F32Gguf => Path.Combine(TestPaths.Stories260K, "stories260K-f32.gguf");
    internal static string F16Gguf => Path.Combine(TestPaths.Stories260K, "stories260K-f16.gguf");
    internal static string Q8Gguf => Path.Combine(TestPaths.Stories260K, "stories260K-q8_0.gguf");
    internal static string Llama2cBin => Path.Combine(TestPaths.Stories260K, "stories260K.bin");

    /// <summary>(name, rows, cols; cols 0 for a vector, heads for q/k (rows to un-permute), else 0).</summary>
    internal static IEnumerable<(string Name, int Rows, int Cols, int PermuteHeads)> Tensors()
    {
        yield return ("model.embed_tokens.weight", 512, 64, 0);
        yield return ("model.norm.weight", 64, 0, 0);
        for (int l = 0; l < 5; l++)
        {
            string p = $"model.layers.{l}.";
            yield return (p + "input_layernorm.weight", 64, 0, 0);
            yield return (p + "self_attn.q_proj.weight", 64, 64, 8);
            yield return (p + "self_attn.k_proj.weight", 32, 64, 4);
            yield return (p + "self_attn.v_proj.weight", 32, 64, 0);
            yield return (p + "self_attn.o_proj.weight", 64, 64, 0);
            yield return (p + "post_attention_layernorm.weight", 64, 0, 0);
            yield return (p + "mlp.gate_proj.weight", 172, 64, 0);
            yield return (p + "mlp.up_proj.weight", 172, 64, 0);
            yield return (p + "mlp.down_proj.weight", 64, 172, 0);
        }
    }

    internal static float[] Read(ModelWeights weights, string name, int rows, int cols) =>
        cols == 0 ? weights.GetVector(name, rows).Span.ToArray() : weights.GetMatrix(name, rows, cols).Span.ToArray();

    /// <summary>
    /// llama2.c/GGUF q/k rows → Hugging Face rows: HF = w.reshape(heads, hd/2, 2, dim).transpose(0,2,1,3), i.e.
    /// HF row h·hd + i·hd/2 + j is llama2.c row h·hd + 2j + i.
    /// </summary>
    internal static float[] AdjacentPairsToRotateHalf(float[] w, int heads, int rows, int cols)
    {
        int hd = rows / heads;
        var result = new float[w.Length];
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < hd / 2; j++)
                    Array.Copy(w, (h * hd + 2 * j + i) * cols, result, (h * hd + i * hd / 2 + j) * cols, cols);
        return result;
    }

    [Theory]
    [InlineData("f32.gguf")]
    [InlineData("bin")]
    public void ExactFormsEqualTheSafetensorsAfterUnpermutingQK(string form)
    {
        string path = form == "bin" ? Llama2cBin : F32Gguf;
        using ModelWeights hf = ModelWeights.Open(TestPaths.Stories260KHf, Shape);
        using ModelWeights weights = ModelWeights.Open(path, Shape);
        Assert.Equal(RopeLayout.AdjacentPairs, weights.RopeLayout);
        Assert.Equal(form == "bin" ? null : "llama", weights.Metadata?.Architecture);

        foreach ((string name, int rows, int cols, int heads) in Tensors())
        {
            float[] expected = Read(hf, name, rows, cols);
            float[] actual = Read(weights, name, rows, cols);
            if (heads > 0)
                actual = AdjacentPairsToRotateHalf(actual, heads, rows, cols);
            Assert.True(expected.AsSpan().SequenceEqual(actual), $"{form}: {name} differs");
        }
        // GGUF stores the tied classifier as a copy (output.weight → lm_head.weight); llama2.c shares it.
        if (form == "bin")
            Assert.False(weights.Contains("lm_head.weight"));
        else
            Assert.Equal(Read(hf, "model.embed_tokens.weight", 512, 64), Read(weights, "lm_head.weight", 512, 64));
        weights.MarkUsed("lm_head.weight");
        weights.ThrowIfUnusedTensors();
    }

    [Theory]
    [InlineData("f16")]
    [InlineData("q8_0")]
    public void LossyFormsAreWithinTheirRoundingError(string form)
    {
        using ModelWeights hf = ModelWeights.Open(TestPaths.Stories260KHf, Shape);
        using ModelWeights weights = ModelWeights.Open(form == "f16" ? F16Gguf : Q8Gguf, Shape);
        Assert.Equal(RopeLayout.AdjacentPairs, weights.RopeLayout);

        foreach ((string name, int rows, int cols, int heads) in Tensors())
        {
            float[] expected = Read(hf, name, rows, cols);
            float[] actual = Read(weights, name, rows, cols);
            if (heads > 0)
                actual = AdjacentPairsToRotateHalf(actual, heads, rows, cols);
            bool q8 = form == "q8_0" && cols > 0 && cols % 32 == 0;
            for (int b = 0; b < expected.Length; b += 32)
            {
                int n = Math.Min(32, expected.Length - b);
                float amax = 0;
                for (int i = 0; i < n; i++)
                    amax = Math.Max(amax, Math.Abs(expected[b + i]));
                for (int i = b; i < b + n; i++)
                {
                    // F16: half an ulp (2^-11 relative, plus subnormal spacing). Q8_0: half a step of
                    // d = amax/127, plus d's own F16 rounding times |q| ≤ 127.
                    double bound = cols == 0 ? 0 // norms stay F32
                        : q8 ? amax / 127.0 * (0.5 + 127 * Math.Pow(2, -11)) + 1e-7
                        : Math.Abs(expected[i]) * Math.Pow(2, -11) + Math.Pow(2, -25);
                    Assert.True(Math.Abs(expected[i] - actual[i]) <= bound, $"{form}: {name}[{i}] = {actual[i]}, expected {expected[i]} ± {bound}");
                }
            }
        }
    }

    [Fact]
    public void PackedQ8_0AndF16ConversionsEqualTheConvertersFiles()
    {
        // The q8_0/f16 GGUFs were made by an independent numpy implementation of llama.cpp's reference
        // quantizer: converting the f32 GGUF must give the same bytes.
        using ModelWeights f32 = ModelWeights.Open(F32Gguf, Shape);
        using ModelWeights f16 = ModelWeights.Open(F16Gguf, Shape);
        using ModelWeights q8 = ModelWeights.Open(Q8Gguf, Shape);
        int blocks = 0;
        foreach ((string name, int rows, int cols, _) in Tensors())
        {
            if (cols == 0)
                continue;
            Assert.True(f32.GetPackedMatrix(name, rows, cols, WeightFormat.F16).Bytes.SequenceEqual(
                f16.GetPackedMatrix(name, rows, cols, WeightFormat.F16).Bytes), name);
            if (cols % 32 != 0)
                continue;
            PackedTensor fromF32 = f32.GetPackedMatrix(name, rows, cols, WeightFormat.Q8_0);
            PackedTensor stored = q8.GetPackedMatrix(name, rows, cols, WeightFormat.Q8_0);
            Assert.Equal(cols / 32 * 34, fromF32.RowBytes);
            Assert.Equal((rows + 7) / 8 * 8 * fromF32.RowBytes, fromF32.Bytes.Length); // whole groups of 8 rows
            Assert.True(fromF32.Bytes.SequenceEqual(stored.Bytes), name);
            blocks += rows * cols / 32;
        }
        Assert.True(blocks > 5000, $"{blocks}");
    }

    [Fact]
    public void CopiedQ8_0BlocksAreRearrangedInPlaceAndOtherFormatsStillReadThem()
    {
        using ModelWeights mapped = ModelWeights.Open(Q8Gguf, Shape);
        using ModelWeights copied = ModelWeights.Open(Q8Gguf, Shape, WeightLoading.Copy);
        int checkedTensors = 0;
        foreach ((string name, int rows, int cols, _) in Tensors())
        {
            if (cols == 0 || cols % 32 != 0)
                continue;
            // The kernel layout first: a copied file's blocks are rearranged where they lie, a mapped file's into a copy.
            Assert.True(copied.GetPackedMatrix(name, rows, cols, WeightFormat.Q8_0).Bytes.SequenceEqual(mapped.GetPackedMatrix(name, rows, cols, WeightFormat.Q8_0).Bytes), name);
            // Then every other format of the same tensor, converted from the rearranged blocks.
            Assert.True(copied.GetMatrix(name, rows, cols).Span.SequenceEqual(mapped.GetMatrix(name, rows, cols).Span), name);
            Assert.True(copied.GetPackedMatrix(name, rows, cols, WeightFormat.F16).Bytes.SequenceEqual(mapped.GetPackedMatrix(name, rows, cols, WeightFormat.F16).Bytes), name);
            checkedTensors++;
        }
        Assert.True(checkedTensors >= 20, $"{checkedTensors}");
    }

    [Fact]
    public void EachFormatIsMadeOnce()
    {
        using ModelWeights q8 = ModelWeights.Open(Q8Gguf, Shape);
        const string Name = "model.layers.0.self_attn.q_proj.weight";
        PackedTensor a = q8.GetPackedMatrix(Name, 64, 64, WeightFormat.Q8_0);
        PackedTensor b = q8.GetPackedMatrix(Name, 64, 64, WeightFormat.Q8_0);
        Assert.True(a.Bytes == b.Bytes); // same memory: the stored blocks are rearranged into the kernel layout once
        Assert.Equal(WeightFormat.Q8_0, a.Format);
        Assert.Equal((64, 64, 68), (a.Rows, a.Cols, a.RowBytes));
        Assert.Equal(Name, a.Name);
        Assert.Equal(64 * 68, a.Bytes.Length);
        Assert.Throws<InvalidOperationException>(() => a.Row(1)); // the kernel layout interleaves rows

        PackedTensor f32 = q8.GetPackedMatrix(Name, 64, 64, WeightFormat.F32);
        Assert.True(f32.Bytes == q8.GetPackedMatrix(Name, 64, 64, WeightFormat.F32).Bytes); // converted once
        // GetMatrix shares the F32 copy.
        Assert.True(System.Runtime.InteropServices.MemoryMarshal.AsBytes(q8.GetMatrix(Name, 64, 64).Span) == f32.Bytes);

        // Q4_0 (or any block format) from Q8_0 would be a lossy second quantization: refused, naming the tensor and both formats.
        foreach (WeightFormat other in new[] { WeightFormat.Q4_0, WeightFormat.Q4_1, WeightFormat.Q5_0, WeightFormat.Q5_1 })
        {
            var refused = Assert.Throws<ModelFormatException>(() => q8.GetPackedMatrix(Name, 64, 64, other));
            Assert.Contains(Name, refused.Message);
            Assert.Contains($"computes it in {other}", refused.Message);
        }
        var mismatch = Assert.Throws<ModelFormatException>(() => q8.GetPackedMatrix(Name, 64, 64, WeightFormat.Q4_0));
        Assert.Contains("stored as Q8_0", mismatch.Message);
        Assert.Contains("computes it in Q4_0", mismatch.Message);

        // Rows that are not a multiple of 32 cannot be Q8_0/Q4_0: an argument error, not a file error.
        Assert.Throws<ArgumentException>(() => q8.GetPackedMatrix("model.layers.0.mlp.down_proj.weight", 64, 172, WeightFormat.Q8_0));
        Assert.Throws<ArgumentException>(() => q8.GetPackedMatrix("model.layers.0.mlp.down_proj.weight", 64, 172, WeightFormat.Q4_0));
        Assert.Equal(64 * 172 * 2, q8.GetPackedMatrix("model.layers.0.mlp.down_proj.weight", 64, 172, WeightFormat.F16).Bytes.Length);
        var e = Assert.Throws<ModelFormatException>(() => q8.GetPackedMatrix(Name, 32, 64, WeightFormat.F32));
        Assert.Contains("expected shape [32, 64], file has [64, 64]", e.Message);
    }

    [Fact]
    public void MetadataIsExposed()
    {
        using ModelWeights weights = ModelWeights.Open(F32Gguf);
        GgufMetadata m = weights.Metadata!;
        Assert.Equal(3, m.Version);
        Assert.Equal("llama", m.Architecture);
        Assert.Equal(64, m.GetInteger("llama.embedding_length"));
        Assert.Equal(1e-5, m.GetFloat("llama.attention.layer_norm_rms_epsilon")!.Value, 1e-9);
        Assert.Equal(512, m.GetStringArray("tokenizer.ggml.tokens")!.Length);
        Assert.Equal(512, m.GetFloat32Array("tokenizer.ggml.scores")!.Length);
        Assert.Equal(6, m.GetInt32Array("tokenizer.ggml.token_type")![3]); // <0x00> is a byte piece
        Assert.True(m.GetBool("tokenizer.ggml.add_bos_token"));
        Assert.Null(m.GetString("no.such.key"));
        Assert.Contains("general.alignment", m.Keys);
        var e = Assert.Throws<ModelFormatException>(() => m.GetString("llama.block_count"));
        Assert.Contains("llama.block_count is a uint32, expected a string", e.Message);
    }

    [Theory]
    [InlineData("f32.gguf")]
    [InlineData("q8_0.gguf")]
    [InlineData("bin")]
    public void HyperparameterMismatchesNameTheKey(string form)
    {
        string path = form == "bin" ? Llama2cBin : Path.Combine(TestPaths.Stories260K, "stories260K-" + form);
        bool gguf = form != "bin";
        void Check(LlamaModelShape shape, string message)
        {
            var e = Assert.Throws<ModelFormatException>(() => ModelWeights.Open(path, shape));
            Assert.Contains(path, e.Message);
            Assert.Contains(message, e.Message);
        }

        Check(Shape with { HiddenSize = 288 }, gguf ? "llama.embedding_length: compiled model expects 288, file has 64" : "dim: compiled model expects 288, file has 64");
        Check(Shape with { IntermediateSize = 768 }, gguf ? "llama.feed_forward_length: compiled model expects 768, file has 172" : "hidden_dim: compiled model expects 768, file has 172");
        Check(Shape with { LayerCount = 6 }, gguf ? "llama.block_count: compiled model expects 6, file has 5" : "n_layers: compiled model expects 6, file has 5");
        Check(Shape with { HeadCount = 4 }, gguf ? "llama.attention.head_count: compiled model expects 4, file has 8" : "n_heads: compiled model expects 4, file has 8");
        Check(Shape with { KvHeadCount = 8 }, gguf ? "llama.attention.head_count_kv: compiled model expects 8, file has 4" : "n_kv_heads: compiled model expects 8, file has 4");
        Check(Shape with { HeadDim = 16 }, gguf ? "llama.rope.dimension_count: compiled model expects 16, file has 8" : "head_size (dim / n_heads): compiled model expects 16, file has 8");
        Check(Shape with { VocabSize = 32000 }, gguf ? "llama.vocab_size: compiled model expects 32000, file has 512" : "vocab_size: compiled model expects 32000, file has 512");
        Check(Shape with { MaxContext = 1024 }, gguf ? "llama.context_length: compiled model expects at least 1024 (its MaxContext), file has 512" : "seq_len: compiled model expects at least 1024 (its MaxContext), file has 512");
        if (gguf)
            Check(Shape with { RopeTheta = 500000f }, "llama.rope.freq_base: compiled model expects 500000, file has 10000");
        else
            Check(Shape with { TiedEmbeddings = false }, "vocab_size: compiled model expects a separate classifier");

        // A smaller MaxContext than the file's is fine.
        using ModelWeights ok = ModelWeights.Open(path, Shape with { MaxContext = 256 });
    }

    /// <summary>Rows of llama.cpp blocks, <paramref name="rowBytes"/> each, in the kernel layout.</summary>
    internal static byte[] KernelLayout(WeightFormat format, byte[] blocks, int rowBytes)
    {
        int rows = blocks.Length / rowBytes, cols = rowBytes / (format == WeightFormat.Q8_0 ? 34 : 18) * 32;
        var grouped = new byte[BlockQuantization.KernelLayoutBytes(format, rows, cols)];
        BlockQuantization.ToKernelLayout(format, rows, cols, blocks, grouped);
        return grouped;
    }
}
