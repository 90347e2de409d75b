using System;
using System.Collections.Generic;
using System.IO;
using Xunit;
using Llama.Compiled.Tools;

namespace Llama.Compiled.Tests.Formats;

public sealed class WriterTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("llama-writer-tests-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string PathOf(string name) => Path.Combine(_dir, name);

    /// <summary>stories260K's Hugging Face tensors by name.</summary>
    private static Dictionary<string, float[]> Stories260KHf()
    {
        var tensors = new Dictionary<string, float[]>();
        using ModelWeights hf = ModelWeights.Open(TestPaths.Stories260KHf);
        foreach ((string name, int rows, int cols, _) in Stories260KFormatsTests.Tensors())
            tensors[name] = Stories260KFormatsTests.Read(hf, name, rows, cols);
        return tensors;
    }

    [Theory]
    [InlineData(GgufTensorType.F32, "stories260K-f32.gguf")]
    [InlineData(GgufTensorType.F16, "stories260K-f16.gguf")]
    [InlineData(GgufTensorType.Q8_0, "stories260K-q8_0.gguf")]
    public void WriteLlamaFromSafetensorsReproducesTheConvertersGgufByteForByte(GgufTensorType type, string reference)
    {
        // The Hugging Face q/k rows are permuted back to adjacent pairs, the vocabulary comes from
        // tok512.model: the result is the file convert_llama2c.py wrote from the llama2.c checkpoint.
        string path = PathOf("out.gguf");
        GgufWriter.WriteLlama(path, Stories260KFormatsTests.Shape, Stories260KHf(), type, RopeLayout.RotateHalf,
            SentencePieceModel.Read(Path.Combine(TestPaths.Stories260K, "tok512.model")).ToGguf(),
            name: "stories260K", storeTiedClassifier: true);
        Assert.Equal(File.ReadAllBytes(Path.Combine(TestPaths.Stories260K, reference)), File.ReadAllBytes(path));
    }

    [Theory]
    [InlineData(GgufTensorType.F32)]
    [InlineData(GgufTensorType.F16)]
    [InlineData(GgufTensorType.BF16)]
    [InlineData(GgufTensorType.Q8_0)]
    [InlineData(GgufTensorType.Q4_0)]
    public void WriteLlamaRandomUntiedModelRoundTrips(GgufTensorType type)
    {
        // 2 layers, dim 64, 4 heads of 16 / 2 kv heads, hidden 96 (a multiple of 32), vocab 40, untied.
        var shape = new LlamaModelShape(64, 96, 2, 4, 2, 16, 40, 128, 1e-6f, 500000f, false, 1, [2]);
        var tensors = new Dictionary<string, float[]>();
        int seed = 0;
        void Add(string name, int rows, int cols) => tensors[name] = TestData.Random(rows * cols, seed++, 0.05f);
        Add("model.embed_tokens.weight", 40, 64);
        Add("lm_head.weight", 40, 64);
        Add("model.norm.weight", 64, 1);
        for (int l = 0; l < 2; l++)
        {
            string p = $"model.layers.{l}.";
            Add(p + "input_layernorm.weight", 64, 1);
            Add(p + "post_attention_layernorm.weight", 64, 1);
            Add(p + "self_attn.q_proj.weight", 64, 64);
            Add(p + "self_attn.k_proj.weight", 32, 64);
            Add(p + "self_attn.v_proj.weight", 32, 64);
            Add(p + "self_attn.o_proj.weight", 64, 64);
            Add(p + "mlp.gate_proj.weight", 96, 64);
            Add(p + "mlp.up_proj.weight", 96, 64);
            Add(p + "mlp.down_proj.weight", 64, 96);
        }
        string path = PathOf("random.gguf");
        GgufWriter.WriteLlama(path, shape, name => tensors[name], type, RopeLayout.AdjacentPairs);

        Func<float[], float[]> stored = type switch
        {
            GgufTensorType.F32 => x => x,
            GgufTensorType.F16 => x => Array.ConvertAll(x, v => (float)(Half)v),
            GgufTensorType.BF16 => x => Array.ConvertAll(x, GgufReaderTests.Bf16),
            GgufTensorType.Q8_0 => GgufReaderTests.Q8,
            _ => GgufReaderTests.Q4,
        };
        using ModelWeights weights = ModelWeights.Open(path, shape);
        Assert.Equal(RopeLayout.AdjacentPairs, weights.RopeLayout);
        foreach ((string name, float[] values) in tensors)
        {
            bool vector = name.EndsWith("norm.weight", StringComparison.Ordinal);
            int rows = name.Contains("k_proj") || name.Contains("v_proj") ? 32
                : name.Contains("gate_proj") || name.Contains("up_proj") ? 96
                : name.Contains("embed") || name.Contains("lm_head") ? 40 : 64;
            float[] actual = vector ? weights.GetVector(name, 64).Span.ToArray() : weights.GetMatrix(name, rows, values.Length / rows).Span.ToArray();
            Assert.Equal(vector ? values : stored(values), actual);
        }
        weights.ThrowIfUnusedTensors();
        Assert.Equal(500000.0, weights.Metadata!.GetFloat("llama.rope.freq_base"));
        Assert.Equal(128, weights.Metadata.GetInteger("llama.context_length"));
    }

    [Fact]
    public void RotateHalfInputIsPermutedToAdjacentPairs()
    {
        float[] hf = new float[8 * 3];
        for (int i = 0; i < hf.Length; i++)
            hf[i] = i;
        // 2 heads of 4 rows: HF rows (h, half i, pair j) = h·4 + i·2 + j → adjacent row h·4 + 2j + i.
        float[] pairs = GgufWriter.RotateHalfToAdjacentPairs(hf, heads: 2, rowCount: 8, cols: 3);
        int[] hfRowOf = [0, 2, 1, 3, 4, 6, 5, 7];
        for (int row = 0; row < 8; row++)
            Assert.Equal(hf.AsSpan(hfRowOf[row] * 3, 3).ToArray(), pairs.AsSpan(row * 3, 3).ToArray());
        Assert.Equal(hf, Stories260KFormatsTests.AdjacentPairsToRotateHalf(pairs, 2, 8, 3));
        Assert.Throws<ArgumentException>(() => GgufWriter.RotateHalfToAdjacentPairs(hf, heads: 3, rowCount: 8, cols: 3));
    }

    [Fact]
    public void GgufWriterMisuseIsRejected()
    {
        using var writer = new GgufWriter(new MemoryStream());
        writer.AddString("general.architecture", "llama");
        Assert.Throws<ArgumentException>(() => writer.AddString("general.architecture", "again"));
        Assert.Throws<ArgumentException>(() => writer.AddValue("x", new DateTime()));
        Assert.Throws<ArgumentException>(() => writer.AddValue("nested", new object[] { new int[1], "not an array" }));
        Assert.Throws<ArgumentException>(() => writer.AddUInt32("general.alignment", 48));
        Assert.Throws<ArgumentException>(() => writer.AddTensor("q", [2, 48], GgufTensorType.Q8_0));
        Assert.Throws<ArgumentException>(() => writer.AddTensor("q", [2, 0], GgufTensorType.F32));
        Assert.Throws<ArgumentException>(() => writer.AddTensor("q", [1, 1, 1, 1, 1], GgufTensorType.F32));
        Assert.Throws<ArgumentOutOfRangeException>(() => writer.AddTensor("q", [2], (GgufTensorType)99));
        writer.AddTensor("a", [2], GgufTensorType.F32);
        writer.AddTensor("b", [32], GgufTensorType.Q4_0);
        Assert.Throws<ArgumentException>(() => writer.AddTensor("a", [2], GgufTensorType.F32));
        Assert.Throws<InvalidOperationException>(() => writer.AddUInt32("general.alignment", 64)); // after a tensor
        Assert.Throws<InvalidOperationException>(() => writer.WriteTensorData("b", new float[32])); // out of order
        Assert.Throws<ArgumentException>(() => writer.WriteTensorData("a", new float[3]));
        writer.WriteTensorData("a", [1f, 2f]);
        Assert.Throws<InvalidOperationException>(() => writer.AddUInt32("late", 1));
        Assert.Throws<InvalidOperationException>(writer.Finish); // b not written
        Assert.Throws<ArgumentException>(() => writer.WriteTensorData("b", new byte[17]));
        writer.WriteTensorData("b", new byte[18]);
        writer.Finish();
        Assert.True(writer.IsFinished);
        Assert.Throws<InvalidOperationException>(() => writer.WriteTensorData("c", new float[1]));
    }

    [Fact]
    public void SafetensorsWriterRoundTrips()
    {
        float[] a = TestData.Random(6, seed: 1);
        float[] b = TestData.Random(70, seed: 2);
        float[] c = TestData.Random(45, seed: 3);
        string path = PathOf("model.safetensors");
        using (var writer = new SafetensorsWriter(path))
        {
            writer.AddMetadata("format", "pt");
            writer.AddMetadata("note", "quote \" and ünïcode");
            writer.AddTensor("model.a", "F32", [2, 3]);
            writer.AddTensor("model.b", "F16", [70]);
            writer.AddTensor("model.c", "BF16", [5, 9]);
            writer.AddTensor("model.empty", "F32", [0, 4]);
            writer.WriteTensorData("model.a", a);
            writer.WriteTensorData("model.b", b);
            writer.WriteTensorData("model.c", c);
            writer.WriteTensorData("model.empty", []);
            writer.Finish();
        }
        byte[] bytes = File.ReadAllBytes(path);
        Assert.Equal(0ul, BitConverter.ToUInt64(bytes) % 8);

        using ModelWeights weights = ModelWeights.Open(path);
        Assert.Equal(a, weights.GetMatrix("model.a", 2, 3).Span.ToArray());
        Assert.Equal(Array.ConvertAll(b, v => (float)(Half)v), weights.GetVector("model.b", 70).Span.ToArray());
        Assert.Equal(Array.ConvertAll(c, GgufReaderTests.Bf16), weights.GetMatrix("model.c", 5, 9).Span.ToArray());
        Assert.Equal(0, weights.GetMatrix("model.empty", 0, 4).Length);
        weights.ThrowIfUnusedTensors();
    }

    [Fact]
    public void SafetensorsWriterCopiesStories260K()
    {
        Dictionary<string, float[]> tensors = Stories260KHf();
        string path = PathOf("copy.safetensors");
        using (var writer = new SafetensorsWriter(path))
        {
            foreach ((string name, int rows, int cols, _) in Stories260KFormatsTests.Tensors())
                writer.AddTensor(name, "F32", cols == 0 ? [rows] : [rows, cols]);
            foreach ((string name, _, _, _) in Stories260KFormatsTests.Tensors())
                writer.WriteTensorData(name, tensors[name]);
            writer.Finish();
        }
        Assert.Equal(new FileInfo(Path.Combine(TestPaths.Stories260KHf, "model.safetensors")).Length - new FileInfo(path).Length,
            HeaderLength(Path.Combine(TestPaths.Stories260KHf, "model.safetensors")) - HeaderLength(path));
        using ModelWeights copy = ModelWeights.Open(path, Stories260KFormatsTests.Shape);
        foreach ((string name, int rows, int cols, _) in Stories260KFormatsTests.Tensors())
            Assert.Equal(tensors[name], Stories260KFormatsTests.Read(copy, name, rows, cols));
        copy.ThrowIfUnusedTensors();
    }

    private static long HeaderLength(string path) => (long)BitConverter.ToUInt64(File.ReadAllBytes(path).AsSpan(0, 8));

    [Fact]
    public void SafetensorsWriterMisuseIsRejected()
    {
        using var writer = new SafetensorsWriter(new MemoryStream());
        Assert.Throws<ArgumentException>(() => writer.AddTensor("__metadata__", "F32", [1]));
        Assert.Throws<ArgumentException>(() => writer.AddTensor("x", "I64", [1]));
        Assert.Throws<ArgumentException>(() => writer.AddTensor("x", "F32", [-1]));
        writer.AddTensor("x", "F32", [2]);
        Assert.Throws<ArgumentException>(() => writer.AddTensor("x", "F16", [2]));
        writer.AddMetadata("k", "v");
        Assert.Throws<ArgumentException>(() => writer.AddMetadata("k", "w"));
        Assert.Throws<ArgumentException>(() => writer.WriteTensorData("x", [1f]));
        Assert.Throws<InvalidOperationException>(() => writer.WriteTensorData("y", [1f]));
        Assert.Throws<InvalidOperationException>(writer.Finish);
        writer.WriteTensorData("x", [1f, 2f]);
        Assert.Throws<InvalidOperationException>(() => writer.AddTensor("z", "F32", [1]));
        writer.Finish();
    }
}
