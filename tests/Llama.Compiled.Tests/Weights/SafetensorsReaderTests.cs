using System;
using System.Buffers.Binary;
using System.IO;
using System.Text;
using Xunit;
using Llama.Compiled.CompilerServices;

namespace Llama.Compiled.Tests.Weights;

public sealed class SafetensorsReaderTests : IDisposable
{
    // A unique folder per test instance (xunit creates one per test), deleted afterwards.
    private readonly string _dir = Directory.CreateTempSubdirectory("llama-weights-tests-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string WriteFile(string name, byte[] bytes)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    // ---- the real model ----

    [Fact]
    public void OpensStories260KWithAll47TensorsInTheirShapes()
    {
        using ModelWeights weights = ModelWeights.Open(TestPaths.Stories260KHf);
        Assert.Equal(RopeLayout.RotateHalf, weights.RopeLayout);
        Assert.Equal(Path.GetFullPath(TestPaths.Stories260KHf), weights.Path);

        // dim 64, hidden 172, 5 layers, 8 heads / 4 kv heads of 8: every tensor requested once.
        WeightTensor embed = weights.GetMatrix("model.embed_tokens.weight", 512, 64);
        weights.GetVector("model.norm.weight", 64);
        for (int layer = 0; layer < 5; layer++)
        {
            string p = $"model.layers.{layer}.";
            weights.GetMatrix(p + "self_attn.q_proj.weight", 64, 64);
            weights.GetMatrix(p + "self_attn.k_proj.weight", 32, 64);
            weights.GetMatrix(p + "self_attn.v_proj.weight", 32, 64);
            weights.GetMatrix(p + "self_attn.o_proj.weight", 64, 64);
            weights.GetMatrix(p + "mlp.gate_proj.weight", 172, 64);
            weights.GetMatrix(p + "mlp.up_proj.weight", 172, 64);
            weights.GetMatrix(p + "mlp.down_proj.weight", 64, 172);
            weights.GetVector(p + "input_layernorm.weight", 64);
            weights.GetVector(p + "post_attention_layernorm.weight", 64);
        }
        // 2 + 5 × 9 = 47 requested; nothing else may be in the file.
        weights.ThrowIfUnusedTensors();

        Assert.Equal("model.embed_tokens.weight", embed.Name);
        Assert.Equal(512 * 64, embed.Length);
        ReadOnlySpan<float> values = embed.Span;
        bool anyNonZero = false;
        foreach (float value in values)
        {
            Assert.True(float.IsFinite(value));
            Assert.True(MathF.Abs(value) < 100f);
            anyNonZero |= value != 0f;
        }
        Assert.True(anyNonZero);
        Assert.False(weights.Contains("lm_head.weight")); // tied embeddings
    }

    /// <summary>
    /// A block type the safetensors reader cannot size (Q8_0, Q4_0) declared over fewer bytes than its shape needs: found
    /// by the unsafe-code audit, it made the conversion read (mapped) or the in-place rearrangement write (copied) past the
    /// tensor. Every view is now checked against rows × stored row bytes before any kernel or conversion touches it.
    /// </summary>
    [Theory]
    [InlineData(WeightLoading.Map)]
    [InlineData(WeightLoading.Copy)]
    public void ABlockTypeTensorSmallerThanItsShapeIsAFormatError(WeightLoading loading)
    {
        string file = Path.Combine(_dir, $"short-q8-{loading}.safetensors");
        File.WriteAllBytes(file, SafetensorsTestWriter.BuildRaw(
            """{"w":{"dtype":"Q8_0","shape":[65536,32],"data_offsets":[0,0]},"v":{"dtype":"Q4_0","shape":[4,20],"data_offsets":[0,72]}}""", new byte[72]));
        using ModelWeights weights = loading == WeightLoading.Map ? ModelWeights.Open(file) : ModelWeights.Open(file, Stories260K.CompiledShape, loading);
        var packed = Assert.Throws<ModelFormatException>(() => weights.GetPackedMatrix("w", 65536, 32, WeightFormat.Q8_0));
        Assert.Contains("needs 2228224 bytes, the file holds 0", packed.Message);
        Assert.Throws<ModelFormatException>(() => weights.GetMatrix("w", 65536, 32));
        var ragged = Assert.Throws<ModelFormatException>(() => weights.GetMatrix("v", 4, 20)); // stored Q4_0, asked for as F32
        Assert.Contains("not a multiple of 32", ragged.Message);
    }

    [Fact]
    public void OpensASafetensorsFileDirectly()
    {
        string file = Path.Combine(TestPaths.Stories260KHf, "model.safetensors");
        using ModelWeights weights = ModelWeights.Open(file);
        Assert.Equal(file, weights.Path);
        Assert.True(weights.Contains("model.norm.weight"));
        Assert.Equal(64, weights.GetVector("model.norm.weight", 64).Span.Length);
    }

    [Fact]
    public void WrongShapeNamesTheTensorAndBothShapes()
    {
        using ModelWeights weights = ModelWeights.Open(TestPaths.Stories260KHf);
        var e = Assert.Throws<ModelFormatException>(() => weights.GetMatrix("model.layers.0.self_attn.k_proj.weight", 64, 64));
        Assert.Contains("model.layers.0.self_attn.k_proj.weight", e.Message);
        Assert.Contains("expected shape [64, 64], file has [32, 64]", e.Message);

        e = Assert.Throws<ModelFormatException>(() => weights.GetVector("model.embed_tokens.weight", 512));
        Assert.Contains("expected shape [512], file has [512, 64]", e.Message);
    }

    [Fact]
    public void MissingTensorNamesTheTensorAndTheFile()
    {
        using ModelWeights weights = ModelWeights.Open(TestPaths.Stories260KHf);
        var e = Assert.Throws<ModelFormatException>(() => weights.GetMatrix("lm_head.weight", 512, 64));
        Assert.Contains("tensor lm_head.weight not found in", e.Message);
        Assert.Contains("model.safetensors", e.Message);
    }

    [Fact]
    public void UnusedTensorsAreReportedUnlessMarkedUsed()
    {
        using ModelWeights weights = ModelWeights.Open(TestPaths.Stories260KHf);
        weights.GetMatrix("model.embed_tokens.weight", 512, 64);
        var e = Assert.Throws<ModelFormatException>(weights.ThrowIfUnusedTensors);
        Assert.Contains("unknown tensor(s)", e.Message);
        Assert.Contains("model.layers.0.mlp.down_proj.weight", e.Message);
        Assert.Contains("and 26 more", e.Message); // 46 unused, the first 20 listed
        Assert.DoesNotContain("model.embed_tokens.weight", e.Message);

        string file = WriteFile("model.safetensors", SafetensorsTestWriter.Build(
            new TestTensor("used", "F32", [1], SafetensorsTestWriter.F32(1f)),
            new TestTensor("lm_head.weight", "F32", [1], SafetensorsTestWriter.F32(2f))));
        using ModelWeights small = ModelWeights.Open(file);
        small.GetVector("used", 1);
        e = Assert.Throws<ModelFormatException>(small.ThrowIfUnusedTensors);
        Assert.Equal($"unknown tensor(s) lm_head.weight in {file}: the compiled model does not use them; do the weights match its config.json?", e.Message);
        small.MarkUsed("lm_head.weight");
        small.MarkUsed("not-there"); // no-op
        small.ThrowIfUnusedTensors();
    }

    // ---- paths ----

    [Fact]
    public void MissingPathsAndFoldersWithoutWeights()
    {
        string missingFile = Path.Combine(_dir, "nope.safetensors");
        var notFound = Assert.Throws<FileNotFoundException>(() => ModelWeights.Open(missingFile));
        Assert.Contains(missingFile, notFound.Message);

        string missingFolder = Path.Combine(_dir, "nope");
        var noDir = Assert.Throws<DirectoryNotFoundException>(() => ModelWeights.Open(missingFolder));
        Assert.Contains(missingFolder, noDir.Message);

        var e = Assert.Throws<ModelFormatException>(() => ModelWeights.Open(_dir));
        Assert.Equal($"no weights found in folder {_dir}: expected model.safetensors, model.safetensors.index.json, one .gguf file or one llama2.c .bin checkpoint", e.Message);

        string other = WriteFile("model.gguf", [1, 2, 3]);
        Assert.Throws<ModelFormatException>(() => ModelWeights.Open(other));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(5)]
    public void EmptyAndTooShortFilesAreRejected(int length)
    {
        string file = WriteFile("model.safetensors", new byte[length]);
        var e = Assert.Throws<ModelFormatException>(() => ModelWeights.Open(file));
        Assert.Contains(file, e.Message);
    }

    // ---- corrupted headers ----

    [Theory]
    [InlineData("garbage", "not valid JSON")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", "not valid JSON")] // unterminated
    [InlineData("[1,2]", "not a JSON object")]
    [InlineData("", "not valid JSON")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} x", "not valid JSON")]
    [InlineData("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", "tensor a has no \"dtype\"")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", "tensor a has no \"shape\"")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", "tensor a has no \"data_offsets\"")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", "non-negative integers")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", "non-negative integers")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", "non-negative integers")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,4]}}", "non-negative integers")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}}", "\"shape\" is not an array")]
    [InlineData("{\"a\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", "\"dtype\"")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", "begin after they end")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", "more than 2 values")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", "must be [begin, end]")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,12]}}", "run past the end of the data (8 bytes)")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", "shape [3] of F32 needs 12 bytes but data_offsets [0, 8] hold 8")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,8]}}", "is too large")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", "lists \"a\" twice")]
    [InlineData("{\"a\":[]}", "tensor a its header entry is not a JSON object")]
    public void CorruptedHeadersAreRejected(string header, string expected)
    {
        string file = WriteFile("model.safetensors", SafetensorsTestWriter.BuildRaw(header, new byte[8]));
        var e = Assert.Throws<ModelFormatException>(() => ModelWeights.Open(file));
        Assert.Contains(file, e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void InvalidUtf8InTheHeaderIsRejected()
    {
        byte[] json = Encoding.UTF8.GetBytes("{\"a\xff\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}");
        json[3] = 0xFF; // replaces the encoded U+00FF with an invalid UTF-8 sequence
        string file = WriteFile("model.safetensors", SafetensorsTestWriter.BuildRaw((ulong)json.Length, json, new byte[8]));
        Assert.Throws<ModelFormatException>(() => ModelWeights.Open(file));
    }

    [Theory]
    [InlineData(1_000_000ul, "exceeds the file size")]
    [InlineData(ulong.MaxValue, "exceeds the file size")]
    [InlineData(200ul * 1024 * 1024, "exceeds the file size")]
    public void HeaderLengthBeyondTheFileIsRejected(ulong headerLength, string expected)
    {
        byte[] json = Encoding.UTF8.GetBytes("{}");
        string file = WriteFile("model.safetensors", SafetensorsTestWriter.BuildRaw(headerLength, json, new byte[8]));
        var e = Assert.Throws<ModelFormatException>(() => ModelWeights.Open(file));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void HeaderLengthAboveTheLimitIsRejected()
    {
        // A sparse 128 MB file: the length fits in the file but not under the 100 MB header limit.
        string file = Path.Combine(_dir, "model.safetensors");
        using (var stream = new FileStream(file, FileMode.CreateNew))
        {
            stream.SetLength(128L * 1024 * 1024);
            var length = new byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(length, 120UL * 1024 * 1024);
            stream.Write(length);
        }
        var e = Assert.Throws<ModelFormatException>(() => ModelWeights.Open(file));
        Assert.Contains("larger than the 104857600-byte limit", e.Message);
    }

    [Fact]
    public void OverlappingTensorsAreAllowed()
    {
        string header = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}";
        string file = WriteFile("model.safetensors", SafetensorsTestWriter.BuildRaw(header, SafetensorsTestWriter.F32(1f, 2f)));
        using ModelWeights weights = ModelWeights.Open(file);
        Assert.Equal([1f, 2f], weights.GetVector("a", 2).Span.ToArray());
        Assert.Equal([2f], weights.GetVector("b", 1).Span.ToArray());
    }

    [Fact]
    public void UnsupportedDTypeIsRejectedWhenRequested()
    {
        string file = WriteFile("model.safetensors", SafetensorsTestWriter.Build(
            new TestTensor("model.layers.0.ids", "I64", [2], new byte[16]),
            new TestTensor("odd", "F4", [2], new byte[1])));
        using ModelWeights weights = ModelWeights.Open(file);
        var e = Assert.Throws<ModelFormatException>(() => weights.GetVector("model.layers.0.ids", 2));
        Assert.Contains("tensor model.layers.0.ids", e.Message);
        Assert.Contains("has dtype I64; supported: F32, F16, BF16", e.Message);
        Assert.Throws<ModelFormatException>(() => weights.GetVector("odd", 2));
    }

    // ---- dtypes ----

    [Fact]
    public void F32IsReadAsStored()
    {
        float[] values = [0f, -1.5f, 3.25f, float.MaxValue, float.Epsilon, -0f];
        string file = WriteFile("model.safetensors", SafetensorsTestWriter.Build(
            new TestTensor("m", "F32", [2, 3], SafetensorsTestWriter.F32(values))));
        using ModelWeights weights = ModelWeights.Open(file);
        WeightTensor m = weights.GetMatrix("m", 2, 3);
        Assert.Equal(values, m.Span.ToArray());
        Assert.Equal(values, weights.GetMatrix("m", 2, 3).Span.ToArray()); // a second request sees the same data
    }

    [Fact]
    public void F16IsConvertedToF32()
    {
        // 67 values: several full vectors and a tail. A 1-byte tensor first makes the F16 data start at an odd offset.
        var expected = new float[67];
        for (int i = 0; i < expected.Length; i++)
            expected[i] = (i - 30) * 0.125f;
        expected[0] = 65504f;               // largest F16
        expected[1] = 5.9604645E-08f;       // smallest F16 subnormal
        expected[2] = float.NegativeInfinity;
        expected[3] = 0.333251953125f;      // an F16 value with a full mantissa
        var halves = Array.ConvertAll(expected, v => (Half)v);

        string file = WriteFile("model.safetensors", SafetensorsTestWriter.Build(
            new TestTensor("pad", "U8", [1], [7]),
            new TestTensor("h", "F16", [67], SafetensorsTestWriter.F16(halves))));
        using ModelWeights weights = ModelWeights.Open(file);
        Assert.Equal(expected, weights.GetVector("h", 67).Span.ToArray());
        weights.MarkUsed("pad");
        weights.ThrowIfUnusedTensors();
    }

    [Fact]
    public void BF16IsConvertedToF32()
    {
        // BF16 keeps the upper 16 bits of an F32: these values are exact in both.
        var expected = new float[45];
        for (int i = 0; i < expected.Length; i++)
            expected[i] = (i - 20) * 0.5f;
        expected[0] = 3.140625f;
        expected[1] = -1.0842022E-19f;     // 0x9F00_0000
        expected[2] = float.PositiveInfinity;
        expected[3] = BitConverter.UInt32BitsToSingle(0x7F7F_0000); // largest finite BF16
        var bits = Array.ConvertAll(expected, v => (ushort)(BitConverter.SingleToUInt32Bits(v) >> 16));

        string file = WriteFile("model.safetensors", SafetensorsTestWriter.Build(
            new TestTensor("pad", "U8", [3], [1, 2, 3]),
            new TestTensor("b", "BF16", [5, 9], SafetensorsTestWriter.BF16(bits))));
        using ModelWeights weights = ModelWeights.Open(file);
        Assert.Equal(expected, weights.GetMatrix("b", 5, 9).Span.ToArray());
        Assert.Equal(expected, weights.GetMatrix("b", 5, 9).Span.ToArray()); // converted once, reused
    }

    [Fact]
    public void DisposeInvalidatesTheWeights()
    {
        string file = WriteFile("model.safetensors", SafetensorsTestWriter.Build(
            new TestTensor("h", "F16", [2], SafetensorsTestWriter.F16((Half)1f, (Half)2f))));
        ModelWeights weights = ModelWeights.Open(file);
        weights.GetVector("h", 2);
        weights.Dispose();
        weights.Dispose(); // idempotent
        Assert.Throws<ObjectDisposedException>(() => weights.GetVector("h", 2));
        Assert.Throws<ObjectDisposedException>(() => weights.GetMatrix("h", 1, 2));
        Assert.Throws<ObjectDisposedException>(() => weights.Contains("h"));
    }

    // ---- sharded ----

    [Fact]
    public void ShardedIndexOpensEveryShard()
    {
        SafetensorsTestWriter.WriteSharded(_dir,
            ("model-00001-of-00002.safetensors", [
                new TestTensor("a", "F32", [2], SafetensorsTestWriter.F32(1f, 2f)),
                new TestTensor("b", "F16", [1], SafetensorsTestWriter.F16((Half)3f))]),
            ("model-00002-of-00002.safetensors", [
                new TestTensor("c", "BF16", [1, 1], SafetensorsTestWriter.BF16(0x4080))]));
        using ModelWeights weights = ModelWeights.Open(_dir);
        Assert.Equal([1f, 2f], weights.GetVector("a", 2).Span.ToArray());
        Assert.Equal([3f], weights.GetVector("b", 1).Span.ToArray());
        Assert.Equal([4f], weights.GetMatrix("c", 1, 1).Span.ToArray());
        weights.ThrowIfUnusedTensors();

        var e = Assert.Throws<ModelFormatException>(() => weights.GetVector("d", 1));
        Assert.Contains("model.safetensors.index.json", e.Message);
    }

    [Fact]
    public void ShardedIndexMustAgreeWithItsShards()
    {
        string index = Path.Combine(_dir, "model.safetensors.index.json");
        SafetensorsTestWriter.Write(Path.Combine(_dir, "s1.safetensors"), new TestTensor("a", "F32", [1], SafetensorsTestWriter.F32(1f)));

        File.WriteAllText(index, "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\"}}");
        var e = Assert.Throws<ModelFormatException>(() => ModelWeights.Open(_dir));
        Assert.Contains("tensor b not found in", e.Message);

        File.WriteAllText(index, "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\"}}");
        e = Assert.Throws<ModelFormatException>(() => ModelWeights.Open(_dir));
        Assert.Contains("shard s2.safetensors does not exist", e.Message);

        File.WriteAllText(index, "{\"weight_map\":{\"a\":\"../s1.safetensors\"}}");
        e = Assert.Throws<ModelFormatException>(() => ModelWeights.Open(_dir));
        Assert.Contains("not a file name", e.Message);

        File.WriteAllText(index, "{\"weight_map\":{}}");
        Assert.Throws<ModelFormatException>(() => ModelWeights.Open(_dir));

        File.WriteAllText(index, "{\"weight_map\":{\"a\":\"s1.safetensors\",\"a\":\"s1.safetensors\"}}");
        Assert.Throws<ModelFormatException>(() => ModelWeights.Open(_dir));

        File.WriteAllText(index, "{\"weight_map\":");
        Assert.Throws<ModelFormatException>(() => ModelWeights.Open(_dir));

        // A shard tensor the index does not list.
        SafetensorsTestWriter.Write(Path.Combine(_dir, "s1.safetensors"),
            new TestTensor("a", "F32", [1], SafetensorsTestWriter.F32(1f)),
            new TestTensor("extra", "F32", [1], SafetensorsTestWriter.F32(1f)));
        File.WriteAllText(index, "{\"weight_map\":{\"a\":\"s1.safetensors\"}}");
        e = Assert.Throws<ModelFormatException>(() => ModelWeights.Open(_dir));
        Assert.Contains("tensor extra is stored in", e.Message);
    }

    // ---- fuzzing ----

    [Fact]
    public void RandomCorruptionsNeverThrowAnythingButModelFormatException()
    {
        byte[] valid = SafetensorsTestWriter.Build(
            new TestTensor("model.a", "F32", [3, 4], SafetensorsTestWriter.F32(new float[12])),
            new TestTensor("model.b", "F16", [5], SafetensorsTestWriter.F16(new Half[5])),
            new TestTensor("model.c", "BF16", [2, 3], SafetensorsTestWriter.BF16(new ushort[6])));
        int headerEnd = 8 + (int)BinaryPrimitives.ReadUInt64LittleEndian(valid);
        byte[] jsonBytes = Encoding.ASCII.GetBytes("{}[]\",:0123456789-.e ");
        string file = Path.Combine(_dir, "model.safetensors");
        var random = new Random(20240607);
        int opened = 0, rejected = 0;

        for (int iteration = 0; iteration < 10_000; iteration++)
        {
            byte[] bytes = (byte[])valid.Clone();
            int kind = random.Next(5);
            switch (kind)
            {
                case 0: // truncate
                    Array.Resize(ref bytes, random.Next(bytes.Length));
                    break;
                case 1: // flip bits anywhere
                    for (int n = random.Next(1, 9); n > 0; n--)
                        bytes[random.Next(bytes.Length)] ^= (byte)random.Next(1, 256);
                    break;
                case 2: // flip bits in the JSON header
                    for (int n = random.Next(1, 4); n > 0; n--)
                        bytes[random.Next(8, headerEnd)] ^= (byte)random.Next(1, 256);
                    break;
                case 3: // plausible JSON characters in the header
                    for (int n = random.Next(1, 4); n > 0; n--)
                        bytes[random.Next(8, headerEnd)] = jsonBytes[random.Next(jsonBytes.Length)];
                    break;
                default: // another header length: slightly off, or anything
                    ulong length = random.Next(2) == 0
                        ? (ulong)(headerEnd - 8 + random.Next(-16, 17))
                        : (ulong)random.NextInt64() << random.Next(2);
                    BinaryPrimitives.WriteUInt64LittleEndian(bytes, length);
                    break;
            }
            File.WriteAllBytes(file, bytes);

            try
            {
                using ModelWeights weights = ModelWeights.Open(file);
                // ToArray copies, so every byte of every view is read.
                int read = weights.GetMatrix("model.a", 3, 4).Span.ToArray().Length
                    + weights.GetVector("model.b", 5).Span.ToArray().Length
                    + weights.GetMatrix("model.c", 2, 3).Span.ToArray().Length;
                Assert.Equal(12 + 5 + 6, read);
                weights.ThrowIfUnusedTensors();
                opened++;
            }
            catch (ModelFormatException)
            {
                rejected++;
            }
            catch (Exception e)
            {
                Assert.Fail($"iteration {iteration}, mutation {kind}: {e}");
            }
        }

        // Both outcomes occur: some mutations hit only data or padding, most break the header.
        Assert.True(opened > 0, "no mutation left a readable file");
        Assert.True(rejected > 5000, $"only {rejected} mutations were rejected");
    }
}
