using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using System.Text;
using Xunit;
using Llama.Compiled.Tools;

namespace Llama.Compiled.Tests.Formats;

public sealed class GgufReaderTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("llama-gguf-tests-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string PathOf(string name) => Path.Combine(_dir, name);

    /// <summary>Writes a GGUF file with <paramref name="configure"/> and returns its bytes.</summary>
    private static byte[] Build(Action<GgufWriter> configure)
    {
        var stream = new MemoryStream();
        using (var writer = new GgufWriter(stream, leaveOpen: true))
        {
            configure(writer);
            writer.Finish();
        }
        return stream.ToArray();
    }

    private string Write(byte[] bytes, string name = "model.gguf")
    {
        string path = PathOf(name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static void Llama(GgufWriter w) => w.AddString("general.architecture", "llama");

    private ModelFormatException OpenFails(byte[] bytes, string expected)
    {
        string path = Write(bytes);
        var e = Assert.Throws<ModelFormatException>(() => ModelWeights.Open(path));
        Assert.Contains(path, e.Message);
        Assert.Contains(expected, e.Message);
        return e;
    }

    [Fact]
    public void EveryMetadataValueTypeRoundTrips()
    {
        byte[] bytes = Build(w =>
        {
            Llama(w);
            w.AddValue("u8", (byte)200);
            w.AddValue("i8", (sbyte)-100);
            w.AddValue("u16", (ushort)60000);
            w.AddValue("i16", (short)-30000);
            w.AddUInt32("u32", 4_000_000_000);
            w.AddInt32("i32", -2_000_000_000);
            w.AddFloat32("f32", 1.5e-5f);
            w.AddBool("yes", true);
            w.AddBool("no", false);
            w.AddString("s", "héllo ▁wörld 🦙");
            w.AddString("empty", "");
            w.AddValue("u64", ulong.MaxValue);
            w.AddValue("i64", long.MinValue);
            w.AddValue("f64", Math.PI);
            w.AddValue("a.u8", new byte[] { 1, 2, 255 });
            w.AddValue("a.i8", new sbyte[] { -1, 2 });
            w.AddValue("a.u16", new ushort[] { 1, 65535 });
            w.AddValue("a.i16", new short[] { -5, 5 });
            w.AddValue("a.u32", new uint[] { 7, uint.MaxValue });
            w.AddInt32Array("a.i32", [-1, 0, 1]);
            w.AddFloat32Array("a.f32", [0.5f, -2f]);
            w.AddValue("a.bool", new[] { true, false, true });
            w.AddStringArray("a.str", ["a", "", "▁b"]);
            w.AddValue("a.u64", new ulong[] { 1, ulong.MaxValue });
            w.AddValue("a.i64", new long[] { long.MinValue, 3 });
            w.AddValue("a.f64", new double[] { 1e300, -0.0 });
            w.AddValue("a.empty", Array.Empty<float>());
            w.AddValue("a.nested", new object[] { new int[] { 1, 2 }, new int[] { 3 }, Array.Empty<int>() });
            w.AddValue("a.nested2", new object[] { new object[] { new string[] { "x" } } });
        });
        using ModelWeights weights = ModelWeights.Open(Write(bytes));
        GgufMetadata m = weights.Metadata!;

        Assert.Equal(30, m.Keys.Count);
        Assert.Equal("general.architecture", m.Keys[0]);
        Assert.Equal("a.nested2", m.Keys[^1]);
        object Value(string key) => m.TryGetValue(key, out object? v) ? v : throw new KeyNotFoundException(key);
        Assert.Equal((byte)200, Value("u8"));
        Assert.Equal((sbyte)-100, Value("i8"));
        Assert.Equal((ushort)60000, Value("u16"));
        Assert.Equal((short)-30000, Value("i16"));
        Assert.Equal(4_000_000_000u, Value("u32"));
        Assert.Equal(-2_000_000_000, Value("i32"));
        Assert.Equal(1.5e-5f, Value("f32"));
        Assert.Equal(true, Value("yes"));
        Assert.Equal(false, Value("no"));
        Assert.Equal("héllo ▁wörld 🦙", Value("s"));
        Assert.Equal("", Value("empty"));
        Assert.Equal(ulong.MaxValue, Value("u64"));
        Assert.Equal(long.MinValue, Value("i64"));
        Assert.Equal(Math.PI, Value("f64"));
        Assert.Equal(new byte[] { 1, 2, 255 }, Value("a.u8"));
        Assert.Equal(new sbyte[] { -1, 2 }, Value("a.i8"));
        Assert.Equal(new ushort[] { 1, 65535 }, Value("a.u16"));
        Assert.Equal(new short[] { -5, 5 }, Value("a.i16"));
        Assert.Equal(new uint[] { 7, uint.MaxValue }, Value("a.u32"));
        Assert.Equal(new[] { -1, 0, 1 }, Value("a.i32"));
        Assert.Equal(new[] { 0.5f, -2f }, Value("a.f32"));
        Assert.Equal(new[] { true, false, true }, Value("a.bool"));
        Assert.Equal(new[] { "a", "", "▁b" }, Value("a.str"));
        Assert.Equal(new ulong[] { 1, ulong.MaxValue }, Value("a.u64"));
        Assert.Equal(new long[] { long.MinValue, 3 }, Value("a.i64"));
        Assert.Equal(new double[] { 1e300, -0.0 }, Value("a.f64"));
        Assert.Equal(Array.Empty<float>(), Value("a.empty"));
        var nested = (object[])Value("a.nested");
        Assert.Equal(3, nested.Length);
        Assert.Equal(new[] { 1, 2 }, nested[0]);
        Assert.Equal(new[] { 3 }, nested[1]);
        Assert.Equal(new[] { "x" }, ((object[])((object[])Value("a.nested2"))[0])[0]);

        // Typed accessors.
        Assert.Equal(200, m.GetInteger("u8"));
        Assert.Equal(long.MinValue, m.GetInteger("i64"));
        Assert.Equal(4_000_000_000, m.GetInteger("u32"));
        Assert.Throws<ModelFormatException>(() => m.GetInteger("u64")); // above long.MaxValue
        Assert.Equal(1.5e-5f, (float)m.GetFloat("f32")!.Value);
        Assert.Equal(new[] { 1, 2, 255 }, m.GetInt32Array("a.u8"));
        Assert.Equal(new[] { -5, 5 }, m.GetInt32Array("a.i16"));
        var e = Assert.Throws<ModelFormatException>(() => m.GetInt32Array("a.u32"));
        Assert.Contains("a.u32[1] = 4294967295 does not fit", e.Message);
        Assert.Equal(new[] { float.PositiveInfinity, -0f }, m.GetFloat32Array("a.f64"));
        e = Assert.Throws<ModelFormatException>(() => m.GetStringArray("a.i32"));
        Assert.Contains("metadata a.i32 is an array of int32, expected an array of strings", e.Message);
        Assert.Throws<ModelFormatException>(() => m.GetBool("s"));
        Assert.Null(m.GetBool("missing"));
    }

    [Fact]
    public void TensorsOfEveryTypeAreReadWithInnermostFirstDimensions()
    {
        float[] a = TestData.Random(3 * 64, seed: 1);
        float[] b = TestData.Random(2 * 32, seed: 2);
        float[] c = TestData.Random(5 * 32, seed: 3);
        float[] d = TestData.Random(4 * 32, seed: 4);
        float[] e = TestData.Random(7, seed: 5);
        byte[] bytes = Build(w =>
        {
            Llama(w);
            w.AddTensor("blk.0.attn_q.weight", [3, 64], GgufTensorType.Q8_0);
            w.AddTensor("blk.0.attn_k.weight", [2, 32], GgufTensorType.Q4_0);
            w.AddTensor("blk.0.ffn_up.weight", [5, 32], GgufTensorType.F16);
            w.AddTensor("blk.0.ffn_down.weight", [4, 32], GgufTensorType.BF16);
            w.AddTensor("output_norm.weight", [7], GgufTensorType.F32);
            w.WriteTensorData("blk.0.attn_q.weight", a);
            w.WriteTensorData("blk.0.attn_k.weight", b);
            w.WriteTensorData("blk.0.ffn_up.weight", c);
            w.WriteTensorData("blk.0.ffn_down.weight", d);
            w.WriteTensorData("output_norm.weight", e);
        });
        // ne = [64, 3]: innermost first.
        int dims = GgufLayout.FindField(bytes, "blk.0.attn_q.weight dim 0");
        Assert.Equal(64ul, BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(dims)));
        Assert.Equal(3ul, BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(dims + 8)));

        using ModelWeights weights = ModelWeights.Open(Write(bytes));
        Assert.Equal(Q8(a), weights.GetMatrix("model.layers.0.self_attn.q_proj.weight", 3, 64).Span.ToArray());
        Assert.Equal(Q4(b), weights.GetMatrix("model.layers.0.self_attn.k_proj.weight", 2, 32).Span.ToArray());
        Assert.Equal(Array.ConvertAll(c, v => (float)(Half)v), weights.GetMatrix("model.layers.0.mlp.up_proj.weight", 5, 32).Span.ToArray());
        Assert.Equal(Array.ConvertAll(d, Bf16), weights.GetMatrix("model.layers.0.mlp.down_proj.weight", 4, 32).Span.ToArray());
        Assert.Equal(e, weights.GetVector("model.norm.weight", 7).Span.ToArray());
        weights.ThrowIfUnusedTensors();

        // The stored Q8_0 bytes are what BlockQuantization produces, served in the kernel layout.
        var expected = new byte[3 * 2 * 34];
        BlockQuantization.QuantizeQ8_0(a, expected);
        Assert.Equal(Stories260KFormatsTests.KernelLayout(WeightFormat.Q8_0, expected, 2 * 34),
            weights.GetPackedMatrix("model.layers.0.self_attn.q_proj.weight", 3, 64, WeightFormat.Q8_0).Bytes.ToArray());
        // BF16 → F16 goes through F32.
        Assert.Equal(Array.ConvertAll(d, v => (Half)Bf16(v)),
            System.Runtime.InteropServices.MemoryMarshal.Cast<byte, Half>(weights.GetPackedMatrix("model.layers.0.mlp.down_proj.weight", 4, 32, WeightFormat.F16).Bytes).ToArray());
    }

    [Fact]
    public void TensorsSharingBytesAreNotRearrangedInPlace()
    {
        // stories260K's Q8_0 file with o_proj pointed at q_proj's data. A copied file rearranges its Q8_0 blocks where
        // they lie; doing that for one of these would rearrange the other (and twice, once it is requested too).
        byte[] bytes = File.ReadAllBytes(Stories260KFormatsTests.Q8Gguf);
        int q = GgufLayout.FindField(bytes, "blk.0.attn_q.weight offset"), o = GgufLayout.FindField(bytes, "blk.0.attn_output.weight offset");
        bytes.AsSpan(q, 8).CopyTo(bytes.AsSpan(o, 8));
        string path = Write(bytes);
        const string Q = "model.layers.0.self_attn.q_proj.weight", O = "model.layers.0.self_attn.o_proj.weight";

        using ModelWeights mapped = ModelWeights.Open(path, Stories260KFormatsTests.Shape);
        using ModelWeights copied = ModelWeights.Open(path, Stories260KFormatsTests.Shape, WeightLoading.Copy);
        byte[] expected = mapped.GetPackedMatrix(Q, 64, 64, WeightFormat.Q8_0).Bytes.ToArray();
        float[] values = mapped.GetMatrix(Q, 64, 64).Span.ToArray();
        Assert.Equal(expected, copied.GetPackedMatrix(Q, 64, 64, WeightFormat.Q8_0).Bytes.ToArray());
        Assert.Equal(expected, copied.GetPackedMatrix(O, 64, 64, WeightFormat.Q8_0).Bytes.ToArray());
        Assert.Equal(values, copied.GetMatrix(Q, 64, 64).Span.ToArray());
        Assert.Equal(values, copied.GetMatrix(O, 64, 64).Span.ToArray());
    }

    internal static float[] Q8(float[] x)
    {
        var q = new byte[x.Length / 32 * 34];
        var back = new float[x.Length];
        BlockQuantization.QuantizeQ8_0(x, q);
        BlockQuantization.DequantizeQ8_0(q, back);
        return back;
    }

    internal static float[] Q4(float[] x)
    {
        var q = new byte[x.Length / 32 * 18];
        var back = new float[x.Length];
        BlockQuantization.QuantizeQ4_0(x, q);
        BlockQuantization.DequantizeQ4_0(q, back);
        return back;
    }

    /// <summary>Round to nearest even to the upper 16 bits.</summary>
    internal static float Bf16(float v)
    {
        uint bits = BitConverter.SingleToUInt32Bits(v);
        uint rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000;
        return BitConverter.UInt32BitsToSingle(rounded);
    }

    [Fact]
    public void TensorNamesMapToHuggingFaceNames()
    {
        string[] gguf =
        [
            "token_embd.weight", "output_norm.weight", "output.weight",
            "blk.12.attn_norm.weight", "blk.12.ffn_norm.weight",
            "blk.12.attn_q.weight", "blk.12.attn_q.bias", "blk.12.attn_k.weight", "blk.12.attn_k.bias",
            "blk.12.attn_v.weight", "blk.12.attn_v.bias", "blk.12.attn_output.weight", "blk.12.attn_output.bias",
            "blk.12.ffn_gate.weight", "blk.12.ffn_gate.bias", "blk.12.ffn_up.weight", "blk.12.ffn_up.bias",
            "blk.12.ffn_down.weight", "blk.12.ffn_down.bias",
            "rope_freqs.weight", "blk.01.attn_q.weight", "blk.x.attn_q.weight", "blk.3.attn_qkv.weight", "blk.", "blk.4",
        ];
        string[] hf =
        [
            "model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
            "model.layers.12.input_layernorm.weight", "model.layers.12.post_attention_layernorm.weight",
            "model.layers.12.self_attn.q_proj.weight", "model.layers.12.self_attn.q_proj.bias",
            "model.layers.12.self_attn.k_proj.weight", "model.layers.12.self_attn.k_proj.bias",
            "model.layers.12.self_attn.v_proj.weight", "model.layers.12.self_attn.v_proj.bias",
            "model.layers.12.self_attn.o_proj.weight", "model.layers.12.self_attn.o_proj.bias",
            "model.layers.12.mlp.gate_proj.weight", "model.layers.12.mlp.gate_proj.bias",
            "model.layers.12.mlp.up_proj.weight", "model.layers.12.mlp.up_proj.bias",
            "model.layers.12.mlp.down_proj.weight", "model.layers.12.mlp.down_proj.bias",
            "rope_freqs.weight", "blk.01.attn_q.weight", "blk.x.attn_q.weight", "blk.3.attn_qkv.weight", "blk.", "blk.4",
        ];
        byte[] bytes = Build(w =>
        {
            Llama(w);
            foreach (string name in gguf)
                w.AddTensor(name, [1], GgufTensorType.F32);
            for (int i = 0; i < gguf.Length; i++)
                w.WriteTensorData(gguf[i], [(float)i]);
        });
        using ModelWeights weights = ModelWeights.Open(Write(bytes));
        for (int i = 0; i < hf.Length; i++)
        {
            Assert.True(weights.Contains(hf[i]), hf[i]);
            Assert.Equal((float)i, weights.GetVector(hf[i], 1).Span[0]);
        }
        Assert.False(weights.Contains("token_embd.weight"));
        weights.ThrowIfUnusedTensors();

        // Unknown names are reported as stored.
        using ModelWeights again = ModelWeights.Open(Write(bytes, "again.gguf"));
        for (int i = 0; i < 19; i++)
            again.MarkUsed(hf[i]);
        var e = Assert.Throws<ModelFormatException>(again.ThrowIfUnusedTensors);
        Assert.Contains("unknown tensor(s) blk., blk.01.attn_q.weight, blk.3.attn_qkv.weight, blk.4, blk.x.attn_q.weight, rope_freqs.weight in", e.Message);
        Assert.Contains("rope_freqs.weight", e.Message);
        Assert.Contains("blk.3.attn_qkv.weight", e.Message);

        // A GGUF name and the Hugging Face name it maps to cannot both be present.
        OpenFails(Build(w =>
        {
            Llama(w);
            w.AddTensor("token_embd.weight", [1], GgufTensorType.F32);
            w.AddTensor("model.embed_tokens.weight", [1], GgufTensorType.F32);
            w.WriteTensorData("token_embd.weight", [1f]);
            w.WriteTensorData("model.embed_tokens.weight", [1f]);
        }), "two tensors are named model.embed_tokens.weight");
    }

    [Theory]
    [InlineData("llama", RopeLayout.AdjacentPairs)]
    [InlineData("mistral", RopeLayout.AdjacentPairs)]
    [InlineData("qwen2", RopeLayout.RotateHalf)]
    public void RopeLayoutFollowsTheArchitecture(string arch, RopeLayout layout)
    {
        using ModelWeights weights = ModelWeights.Open(Write(Build(w => w.AddString("general.architecture", arch))));
        Assert.Equal(layout, weights.RopeLayout);
        Assert.Equal(arch, weights.Metadata!.Architecture);
    }

    [Fact]
    public void OtherOrMissingArchitecturesAreRejected()
    {
        OpenFails(Build(w => w.AddString("general.architecture", "gpt2")), "unsupported architecture gpt2 (general.architecture); supported: llama, mistral, qwen2");
        OpenFails(Build(_ => { }), "has no general.architecture");
        OpenFails(Build(w => w.AddUInt32("general.architecture", 1)), "metadata general.architecture is a uint32, expected a string");
    }

    [Fact]
    public void HyperparametersAreCheckedOnlyWhereStored()
    {
        LlamaModelShape shape = Stories260KFormatsTests.Shape;
        // qwen2 keys, no vocab_size: the token count is checked instead.
        byte[] bytes = Build(w =>
        {
            w.AddString("general.architecture", "qwen2");
            w.AddUInt32("qwen2.embedding_length", 64);
            w.AddStringArray("tokenizer.ggml.tokens", ["a", "b"]);
        });
        string path = Write(bytes);
        var e = Assert.Throws<ModelFormatException>(() => ModelWeights.Open(path, shape));
        Assert.Contains("tokenizer.ggml.tokens (number of tokens): compiled model expects 512, file has 2", e.Message);
        using (ModelWeights.Open(path)) { } // without a shape nothing is checked

        using (ModelWeights.Open(Write(Build(w => w.AddString("general.architecture", "llama")), "bare.gguf"), shape)) { }

        e = Assert.Throws<ModelFormatException>(() => ModelWeights.Open(Write(Build(w =>
        {
            Llama(w);
            w.AddString("llama.block_count", "five");
        }), "string.gguf"), shape));
        Assert.Contains("metadata llama.block_count is a string, expected an integer", e.Message);
    }

    [Fact]
    public void UnsupportedTensorTypeNamesTypeAndTensor()
    {
        byte[] bytes = Build(w =>
        {
            Llama(w);
            w.AddTensor("blk.0.attn_q.weight", [1, 256], GgufTensorType.F32);
            w.WriteTensorData("blk.0.attn_q.weight", new float[256]);
        });
        int type = GgufLayout.FindField(bytes, "blk.0.attn_q.weight type");
        foreach ((uint id, string name) in new[] { (15u, "Q8_K"), (16u, "IQ2_XXS"), (23u, "IQ4_XS"), (28u, "F64"), (99u, "#99") })
        {
            BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(type), id);
            OpenFails(bytes, $"unsupported tensor type {name} in tensor blk.0.attn_q.weight");
        }
    }

    [Fact]
    public void HeaderProblemsAreRejected()
    {
        byte[] valid = Build(w =>
        {
            Llama(w);
            w.AddTensor("output_norm.weight", [32], GgufTensorType.F32);
            w.AddTensor("blk.0.attn_q.weight", [2, 32], GgufTensorType.Q8_0);
            w.WriteTensorData("output_norm.weight", new float[32]);
            w.WriteTensorData("blk.0.attn_q.weight", new float[64]);
        });
        byte[] Patch(string field, ulong value, int size = 0)
        {
            byte[] copy = (byte[])valid.Clone();
            GgufLayout.Field f = GgufLayout.Walk(copy, out _).Find(x => x.What == field)!;
            if ((size == 0 ? f.Size : size) == 4)
                BinaryPrimitives.WriteUInt32LittleEndian(copy.AsSpan(f.Offset), (uint)value);
            else
                BinaryPrimitives.WriteUInt64LittleEndian(copy.AsSpan(f.Offset), value);
            return copy;
        }

        OpenFails([.. "GGML"u8, .. valid.AsSpan(4)], "not a GGUF file");
        OpenFails(Patch("version", 1), "GGUF version 1 is not supported");
        OpenFails(Patch("version", 0x03000000), "big-endian GGUF files are not supported");
        OpenFails(Patch("version", 4), "unknown GGUF version 4");
        OpenFails(Patch("tensor count", 1_000_000), "the header announces 1000000 tensors");
        OpenFails(Patch("kv count", ulong.MaxValue), "metadata entries, more than");
        OpenFails(Patch("key length", 1L << 40), "runs past the end of the file");
        OpenFails(Patch("general.architecture type", 13), "unknown value type 13");
        OpenFails(Patch("output_norm.weight rank", 5), "has 5 dimensions; GGUF allows 1 to 4");
        OpenFails(Patch("output_norm.weight rank", 0), "has 0 dimensions");
        OpenFails(Patch("output_norm.weight dim 0", ulong.MaxValue), "is too large");
        OpenFails(Patch("output_norm.weight dim 0", 1L << 40), "runs past the end of the data section");
        OpenFails(Patch("blk.0.attn_q.weight dim 1", 1L << 61), "is too large");
        OpenFails(Patch("blk.0.attn_q.weight dim 0", 48), "has rows of 48 elements, not a multiple of its 32-element blocks");
        OpenFails(Patch("blk.0.attn_q.weight offset", 16), "not a multiple of the alignment 32");
        OpenFails(Patch("blk.0.attn_q.weight offset", 1L << 62), "runs past the end of the data section");
        OpenFails(Patch("blk.0.attn_q.weight offset", ulong.MaxValue - 31), "runs past the end of the data section");
        OpenFails(valid.AsSpan(0, valid.Length - 29).ToArray(), "runs past the end of the data section"); // 68 bytes + 28 padding
        OpenFails(valid.AsSpan(0, 30).ToArray(), "the header announces 1 metadata entries, more than the 6 remaining bytes can hold");
        byte[] noTensors = Build(Llama);
        OpenFails(noTensors.AsSpan(0, 40).ToArray(), "a string of 20 bytes in the key of metadata entry 0 runs past the end of the file (40 bytes)");
        OpenFails(noTensors.AsSpan(0, 60).ToArray(), "the file ends at byte 60 while reading general.architecture");
        OpenFails(Build(w => { Llama(w); w.AddValue("deep", Nest(9)); }), "nests arrays more than 8 deep");

        using (ModelWeights.Open(Write(Build(w => { Llama(w); w.AddValue("deep", Nest(8)); }), "deep8.gguf"))) { }

        // A bool must be 0 or 1; duplicate keys and tensor names are corruption.
        byte[] withBool = Build(w => { Llama(w); w.AddBool("flag", true); });
        withBool[withBool.AsSpan().IndexOf("flag"u8) + 4 + 4] = 2; // after the key and the value type
        OpenFails(withBool, "metadata flag is a bool stored as 2");
        byte[] twoKeys = Build(w => { Llama(w); w.AddUInt32("aaaa", 1); w.AddUInt32("bbbb", 2); });
        int b = twoKeys.AsSpan().IndexOf("bbbb"u8);
        "aaaa"u8.CopyTo(twoKeys.AsSpan(b));
        OpenFails(twoKeys, "metadata aaaa appears twice");
        byte[] twoTensors = Build(w =>
        {
            Llama(w);
            w.AddTensor("t1", [1], GgufTensorType.F32);
            w.AddTensor("t2", [1], GgufTensorType.F32);
            w.WriteTensorData("t1", [1f]);
            w.WriteTensorData("t2", [2f]);
        });
        "t1"u8.CopyTo(twoTensors.AsSpan(twoTensors.AsSpan().LastIndexOf("t2"u8)));
        OpenFails(twoTensors, "tensor t1 appears twice");
    }

    private static object Nest(int depth) => depth == 1 ? new int[] { 1 } : new object[] { Nest(depth - 1) };

    [Fact]
    public void AlignmentIsHonoredAndValidated()
    {
        float[] values = TestData.Random(40, seed: 9);
        byte[] bytes = Build(w =>
        {
            Llama(w);
            w.AddUInt32("general.alignment", 64);
            w.AddTensor("a", [3], GgufTensorType.F32);
            w.AddTensor("b", [40], GgufTensorType.F32);
            w.WriteTensorData("a", [1f, 2f, 3f]);
            w.WriteTensorData("b", values);
        });
        Assert.Equal(64ul, BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(GgufLayout.FindField(bytes, "b offset"))));
        GgufLayout.Walk(bytes, out int headerEnd);
        Assert.Equal((headerEnd + 63) / 64 * 64 + 64 + 192, bytes.Length); // data starts aligned, each tensor padded to 64·k
        using (ModelWeights weights = ModelWeights.Open(Write(bytes)))
        {
            Assert.Equal(values, weights.GetVector("b", 40).Span.ToArray());
            Assert.Equal(64, weights.Metadata!.GetInteger("general.alignment"));
        }

        int alignment = GgufLayout.FindField(bytes, "general.alignment value");
        foreach (uint bad in new uint[] { 0, 48, 3, 1u << 30 })
        {
            byte[] copy = (byte[])bytes.Clone();
            BinaryPrimitives.WriteUInt32LittleEndian(copy.AsSpan(alignment), bad);
            OpenFails(copy, $"general.alignment is {bad}; it must be a power of two");
        }
        byte[] stringAlignment = Build(w => { Llama(w); w.AddString("general.alignmenX", "32"); });
        "general.alignment"u8.CopyTo(stringAlignment.AsSpan(stringAlignment.AsSpan().IndexOf("general.alignmenX"u8)));
        OpenFails(stringAlignment, "metadata general.alignment is a string, expected an integer");
    }

    [Fact]
    public void Version2FilesAreRead()
    {
        byte[] bytes = Build(w =>
        {
            Llama(w);
            w.AddTensor("output_norm.weight", [2], GgufTensorType.F32);
            w.WriteTensorData("output_norm.weight", [1f, 2f]);
        });
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(4), 2);
        using ModelWeights weights = ModelWeights.Open(Write(bytes));
        Assert.Equal(2, weights.Metadata!.Version);
        Assert.Equal([1f, 2f], weights.GetVector("model.norm.weight", 2).Span.ToArray());
    }

    [Fact]
    public void FoldersAndFilesAreDispatchedByContent()
    {
        byte[] gguf = Build(w =>
        {
            Llama(w);
            w.AddTensor("output_norm.weight", [2], GgufTensorType.F32);
            w.WriteTensorData("output_norm.weight", [1f, 2f]);
        });

        string folder = Directory.CreateDirectory(PathOf("gguf-folder")).FullName;
        File.WriteAllBytes(Path.Combine(folder, "model-q8_0.gguf"), gguf);
        File.WriteAllBytes(Path.Combine(folder, "tokenizer.bin"), [1, 2, 3]);
        using (ModelWeights weights = ModelWeights.Open(folder))
        {
            Assert.Equal(folder, weights.Path);
            Assert.Equal([1f, 2f], weights.GetVector("model.norm.weight", 2).Span.ToArray());
        }
        File.WriteAllBytes(Path.Combine(folder, "other.gguf"), gguf);
        var e = Assert.Throws<ModelFormatException>(() => ModelWeights.Open(folder));
        Assert.Contains("holds 2 GGUF files (model-q8_0.gguf, other.gguf); pass the path of the one to load", e.Message);

        // llama2.c: the .bin beside tokenizer files; the real checkpoint copied into a folder.
        string binFolder = Directory.CreateDirectory(PathOf("bin-folder")).FullName;
        File.Copy(Stories260KFormatsTests.Llama2cBin, Path.Combine(binFolder, "model.bin"));
        File.Copy(Path.Combine(TestPaths.Stories260K, "tok512.bin"), Path.Combine(binFolder, "tok512.bin"));
        File.WriteAllBytes(Path.Combine(binFolder, "tokenizer.bin"), [1]);
        using (ModelWeights weights = ModelWeights.Open(binFolder, Stories260KFormatsTests.Shape))
            Assert.Equal(RopeLayout.AdjacentPairs, weights.RopeLayout);
        File.WriteAllBytes(Path.Combine(binFolder, "model2.bin"), [1]);
        e = Assert.Throws<ModelFormatException>(() => ModelWeights.Open(binFolder));
        Assert.Contains("holds 2 llama2.c .bin files (model.bin, model2.bin)", e.Message);

        // safetensors wins over GGUF in a folder.
        File.Copy(Path.Combine(TestPaths.Stories260KHf, "model.safetensors"), Path.Combine(folder, "model.safetensors"));
        using (ModelWeights weights = ModelWeights.Open(folder))
            Assert.Equal(RopeLayout.RotateHalf, weights.RopeLayout);

        string tokenizerOnly = Directory.CreateDirectory(PathOf("tok-folder")).FullName;
        File.WriteAllBytes(Path.Combine(tokenizerOnly, "tokenizer.bin"), [1]);
        e = Assert.Throws<ModelFormatException>(() => ModelWeights.Open(tokenizerOnly));
        Assert.Contains("no weights found in folder", e.Message);

        string other = Write([1, 2, 3], "weights.pt");
        e = Assert.Throws<ModelFormatException>(() => ModelWeights.Open(other));
        Assert.Contains("unsupported weights file", e.Message);
        Assert.Throws<FileNotFoundException>(() => ModelWeights.Open(PathOf("missing.gguf")));
        Assert.Throws<ArgumentNullException>(() => ModelWeights.Open(other, null!));
    }
}
