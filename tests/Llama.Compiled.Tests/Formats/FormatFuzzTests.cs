using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using Xunit;
using Llama.Compiled.CompilerServices;
using Llama.Compiled.Tools;

namespace Llama.Compiled.Tests.Formats;

/// <summary>
/// Seeded mutation fuzzing of the GGUF and llama2.c readers (the safetensors fuzz is in
/// SafetensorsReaderTests): every mutated file either opens — and then every tensor request works or
/// throws <see cref="ModelFormatException"/> — or fails to open with <see cref="ModelFormatException"/>.
/// Anything else (another exception type, an access violation, a hang) fails the test. Both ways of loading are
/// fuzzed: a quarter of the mutations are opened with <see cref="WeightLoading.Copy"/> (read into memory the weights
/// own, placed by a first pass over the tensor table, packed formats rearranged in place), the rest mapped.
/// </summary>
public sealed class FormatFuzzTests(Xunit.Abstractions.ITestOutputHelper output) : IDisposable
{
    private const int Iterations = 10_000;

    private readonly string _dir = Directory.CreateTempSubdirectory("llama-fuzz-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    // hidden 32, intermediate 32, 1 layer, 2 heads / 1 kv head of 16, vocab 8, context 16, tied.
    private static readonly LlamaModelShape GgufShape = new(32, 32, 1, 2, 1, 16, 8, 16, 1e-5f, 10000f, true, 1, [2]);

    private static readonly (string Hf, string Gguf, int Rows, int Cols, GgufTensorType Type)[] GgufTensors =
    [
        ("model.embed_tokens.weight", "token_embd.weight", 8, 32, GgufTensorType.Q8_0),
        ("model.layers.0.input_layernorm.weight", "blk.0.attn_norm.weight", 32, 0, GgufTensorType.F32),
        ("model.layers.0.self_attn.q_proj.weight", "blk.0.attn_q.weight", 32, 32, GgufTensorType.Q4_0),
        ("model.layers.0.self_attn.k_proj.weight", "blk.0.attn_k.weight", 16, 32, GgufTensorType.F16),
        ("model.layers.0.self_attn.v_proj.weight", "blk.0.attn_v.weight", 16, 32, GgufTensorType.BF16),
        ("model.layers.0.self_attn.o_proj.weight", "blk.0.attn_output.weight", 32, 32, GgufTensorType.F32),
        ("model.layers.0.post_attention_layernorm.weight", "blk.0.ffn_norm.weight", 32, 0, GgufTensorType.F32),
        ("model.layers.0.mlp.gate_proj.weight", "blk.0.ffn_gate.weight", 32, 32, GgufTensorType.Q8_0),
        ("model.layers.0.mlp.up_proj.weight", "blk.0.ffn_up.weight", 32, 32, GgufTensorType.Q4_0),
        ("model.layers.0.mlp.down_proj.weight", "blk.0.ffn_down.weight", 32, 32, GgufTensorType.F16),
        ("model.norm.weight", "output_norm.weight", 32, 0, GgufTensorType.F32),
    ];

    private static byte[] ValidGguf()
    {
        var stream = new MemoryStream();
        using (var w = new GgufWriter(stream, leaveOpen: true))
        {
            w.AddString("general.architecture", "llama");
            w.AddUInt32("general.alignment", 32);
            w.AddUInt32("llama.context_length", 16);
            w.AddUInt32("llama.embedding_length", 32);
            w.AddUInt32("llama.block_count", 1);
            w.AddUInt32("llama.feed_forward_length", 32);
            w.AddUInt32("llama.attention.head_count", 2);
            w.AddUInt32("llama.attention.head_count_kv", 1);
            w.AddUInt32("llama.rope.dimension_count", 16);
            w.AddFloat32("llama.rope.freq_base", 10000f);
            w.AddValue("misc.u64", 12345ul);
            w.AddValue("misc.f64", 0.5);
            w.AddValue("misc.bools", new[] { true, false });
            w.AddValue("misc.nested", new object[] { new short[] { 1, 2 }, new short[] { 3 } });
            new GgufVocabulary(["<unk>", "<s>", "</s>", "▁a", "b", "▁ab", "<0x41>", "c"],
                [0f, 0f, 0f, -1f, -2f, -3f, 0f, -4f], [2, 3, 3, 1, 1, 1, 6, 1]).AddTo(w);
            foreach ((_, string gguf, int rows, int cols, GgufTensorType type) in GgufTensors)
                w.AddTensor(gguf, cols == 0 ? [rows] : [rows, cols], type);
            int seed = 0;
            foreach ((_, string gguf, int rows, int cols, _) in GgufTensors)
                w.WriteTensorData(gguf, TestData.Random(rows * Math.Max(cols, 1), seed++));
            w.Finish();
        }
        return stream.ToArray();
    }

    private static readonly ulong[] Interesting =
    [
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 16, 31, 32, 33, 63, 64, 255, 256, 4096, 65535,
        0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 1UL << 32, (1UL << 32) + 1, 1UL << 40, 1UL << 62,
        long.MaxValue, 1UL << 63, ulong.MaxValue, ulong.MaxValue - 31,
    ];

    [Fact]
    public void GgufMutationsOnlyEverThrowModelFormatException()
    {
        byte[] valid = ValidGguf();
        List<GgufLayout.Field> fields = GgufLayout.Walk(valid, out int headerEnd);
        string path = Path.Combine(_dir, "fuzz.gguf");
        var random = new Random(4_2024);
        int opened = 0, rejected = 0, tensorsRead = 0, tokenizers = 0, copiesOpened = 0, copiesRead = 0;
        var clock = Stopwatch.StartNew();

        for (int iteration = 0; iteration < Iterations; iteration++)
        {
            byte[] bytes = (byte[])valid.Clone();
            int kind = random.Next(8);
            switch (kind)
            {
                case 0: // truncate, mostly inside the header
                    Array.Resize(ref bytes, random.Next(2) == 0 ? random.Next(headerEnd + 64) : random.Next(bytes.Length));
                    break;
                case 1: // flip bytes anywhere
                    for (int n = random.Next(1, 9); n > 0; n--)
                        bytes[random.Next(bytes.Length)] ^= (byte)random.Next(1, 256);
                    break;
                case 2: // flip bytes in the header
                    for (int n = random.Next(1, 4); n > 0; n--)
                        bytes[random.Next(headerEnd)] ^= (byte)random.Next(1, 256);
                    break;
                case 3: // a structural integer lies: counts, lengths, types, ranks, dimensions, offsets
                case 4:
                    for (int n = kind == 3 ? 1 : 2; n > 0; n--)
                        Lie(bytes, fields[random.Next(fields.Count)], random, bytes.Length);
                    break;
                case 5: // insert or delete bytes inside the header: everything after shifts
                    int at = random.Next(headerEnd);
                    int count = random.Next(1, 9);
                    bytes = random.Next(2) == 0
                        ? [.. bytes.AsSpan(0, at), .. new byte[count], .. bytes.AsSpan(at)]
                        : [.. bytes.AsSpan(0, at), .. bytes.AsSpan(Math.Min(bytes.Length, at + count))];
                    break;
                case 6: // garbage appended
                    var tail = new byte[random.Next(1, 100)];
                    random.NextBytes(tail);
                    bytes = [.. bytes, .. tail];
                    break;
                default: // random bytes over a header range
                    int start = random.Next(headerEnd);
                    random.NextBytes(bytes.AsSpan(start, Math.Min(random.Next(1, 16), headerEnd - start)));
                    break;
            }
            File.WriteAllBytes(path, bytes);

            try
            {
                if (iteration % 8 == 0)
                {
                    try
                    {
                        GgufTokenizer.Load(path);
                        tokenizers++;
                    }
                    catch (ModelFormatException)
                    {
                    }
                }
                WeightLoading? loading = Loading(iteration);
                using ModelWeights weights = loading is { } l ? ModelWeights.Open(path, GgufShape, l) : ModelWeights.Open(path);
                opened++;
                copiesOpened += loading == WeightLoading.Copy ? 1 : 0;
                foreach ((string hf, _, int rows, int cols, _) in GgufTensors)
                {
                    int read = ReadEverything(weights, hf, rows, cols);
                    tensorsRead += read;
                    copiesRead += loading == WeightLoading.Copy ? read : 0;
                }
                Tolerate(weights.ThrowIfUnusedTensors);
                if (weights.Metadata is GgufMetadata metadata)
                    Tolerate(() => GgufTokenizer.Create(metadata));
            }
            catch (ModelFormatException)
            {
                rejected++;
            }
            catch (Exception e)
            {
                File.WriteAllBytes(Path.Combine(Path.GetTempPath(), "llama-fuzz-failure.gguf"), bytes);
                Assert.Fail($"iteration {iteration}, mutation {kind}, {Loading(iteration)?.ToString() ?? "no shape"}: {e}");
            }
        }

        output.WriteLine($"opened {opened} (copied {copiesOpened}), rejected {rejected}, tensor reads {tensorsRead} (from copies {copiesRead}), tokenizers {tokenizers}, {clock.Elapsed}");
        Assert.True(opened > 500, $"only {opened} mutations opened");
        Assert.True(copiesOpened > 100, $"only {copiesOpened} mutations opened with WeightLoading.Copy");
        Assert.True(copiesRead > 1000, $"only {copiesRead} tensor reads from copies");
        Assert.True(rejected > 2000, $"only {rejected} mutations were rejected");
        Assert.True(tensorsRead > 5000, $"{tensorsRead}");
        Assert.True(tokenizers > 100, $"{tokenizers}");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), $"{clock.Elapsed}");
    }

    /// <summary>How iteration <paramref name="iteration"/> opens the file: with the shape, mapped or copied; or without a shape (mapped).</summary>
    private static WeightLoading? Loading(int iteration) => (iteration % 4) switch
    {
        0 => WeightLoading.Map,
        2 => WeightLoading.Copy,
        _ => null,
    };

    private static void Lie(byte[] bytes, GgufLayout.Field field, Random random, int fileLength)
    {
        if (field.Offset + field.Size > bytes.Length)
            return;
        ulong old = field.Size == 4 ? BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(field.Offset)) : BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(field.Offset));
        ulong value = random.Next(6) switch
        {
            0 => old + 1,
            1 => old - 1,
            2 => (ulong)fileLength + (ulong)random.Next(-40, 40),
            3 => (ulong)random.NextInt64() << random.Next(2),
            4 => old + (ulong)random.Next(1, 4) * 32,
            _ => Interesting[random.Next(Interesting.Length)],
        };
        if (field.Size == 4)
            BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(field.Offset), (uint)value);
        else
            BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(field.Offset), value);
    }

    /// <summary>Requests a tensor in F32 and every packed format and reads every byte of each view.</summary>
    private static int ReadEverything(ModelWeights weights, string name, int rows, int cols)
    {
        int read = 0;
        read += Tolerate(() =>
        {
            ReadOnlySpan<float> values = cols == 0 ? weights.GetVector(name, rows).Span : weights.GetMatrix(name, rows, cols).Span;
            float sum = 0;
            foreach (float v in values)
                sum += v;
            return values.Length + (sum == 12345.678f ? 1 : 0);
        });
        if (cols == 0)
            return read;
        foreach (WeightFormat format in new[] { WeightFormat.F32, WeightFormat.F16, WeightFormat.Q8_0, WeightFormat.Q4_0 })
        {
            if (format is WeightFormat.Q8_0 or WeightFormat.Q4_0 && cols % 32 != 0)
                continue; // an ArgumentException by contract: the generated code never asks
            read += Tolerate(() =>
            {
                PackedTensor packed = weights.GetPackedMatrix(name, rows, cols, format);
                int sum = 0;
                foreach (byte b in packed.Bytes)
                    sum += b;
                return packed.Bytes.Length + (sum == -1 ? 1 : 0);
            });
        }
        return read;
    }

    private static int Tolerate(Func<int> action)
    {
        try
        {
            return action() > 0 ? 1 : 0;
        }
        catch (ModelFormatException)
        {
            return 0;
        }
    }

    private static void Tolerate(Action action)
    {
        try
        {
            action();
        }
        catch (ModelFormatException)
        {
        }
    }

    private static void Tolerate(Func<object> action)
    {
        try
        {
            action();
        }
        catch (ModelFormatException)
        {
        }
    }

    // ---- llama2.c ----

    /// <summary>dim 32, hidden 8, 1 layer, 2 heads / 1 kv head, vocab 6, seq_len 2; shared or separate classifier.</summary>
    private static byte[] ValidLlama2c(bool shared)
    {
        int[] header = [32, 8, 1, 2, 1, shared ? 6 : -6, 2];
        int floats = 6 * 32 + (32 + 32 * 32 + 2 * 16 * 32 + 32 * 32 + 32 + 3 * 8 * 32) + 32 + 2 * (2 * 16 / 2) + (shared ? 0 : 6 * 32);
        var bytes = new byte[28 + 4 * floats];
        for (int i = 0; i < 7; i++)
            BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(4 * i), header[i]);
        float[] values = TestData.Random(floats, seed: shared ? 1 : 2);
        Buffer.BlockCopy(values, 0, bytes, 28, values.Length * 4);
        return bytes;
    }

    private static readonly (string Name, int Rows, int Cols)[] Llama2cTensors =
    [
        ("model.embed_tokens.weight", 6, 32),
        ("model.layers.0.input_layernorm.weight", 32, 0),
        ("model.layers.0.self_attn.q_proj.weight", 32, 32),
        ("model.layers.0.self_attn.k_proj.weight", 16, 32),
        ("model.layers.0.self_attn.v_proj.weight", 16, 32),
        ("model.layers.0.self_attn.o_proj.weight", 32, 32),
        ("model.layers.0.post_attention_layernorm.weight", 32, 0),
        ("model.layers.0.mlp.gate_proj.weight", 8, 32),
        ("model.layers.0.mlp.down_proj.weight", 32, 8),
        ("model.layers.0.mlp.up_proj.weight", 8, 32),
        ("model.norm.weight", 32, 0),
        ("lm_head.weight", 6, 32),
    ];

    [Fact]
    public void Llama2cValidFilesOpenWithTheirShape()
    {
        foreach (bool shared in new[] { true, false })
        {
            string path = Path.Combine(_dir, "valid.bin");
            File.WriteAllBytes(path, ValidLlama2c(shared));
            var shape = new LlamaModelShape(32, 8, 1, 2, 1, 16, 6, 2, 1e-5f, 10000f, shared, 1, [2]);
            using ModelWeights weights = ModelWeights.Open(path, shape);
            foreach ((string name, int rows, int cols) in Llama2cTensors)
            {
                if (name == "lm_head.weight" && shared)
                    Assert.False(weights.Contains(name));
                else
                    Assert.Equal(rows * Math.Max(cols, 1), ReadEverything(weights, name, rows, cols) > 0 ? rows * Math.Max(cols, 1) : -1);
            }
            weights.ThrowIfUnusedTensors();
            byte[] file = File.ReadAllBytes(path);
            float[] embedding = new float[6 * 32];
            Buffer.BlockCopy(file, 28, embedding, 0, embedding.Length * 4);
            Assert.Equal(embedding, weights.GetMatrix("model.embed_tokens.weight", 6, 32).Span.ToArray());
            float[] norm = new float[32];
            Buffer.BlockCopy(file, file.Length - 4 * (32 + 32 + (shared ? 0 : 6 * 32)), norm, 0, 128); // before freq_cis (and wcls)
            Assert.Equal(norm, weights.GetVector("model.norm.weight", 32).Span.ToArray());
            var e = Assert.Throws<ModelFormatException>(() => ModelWeights.Open(path, shape with { TiedEmbeddings = !shared }));
            Assert.Contains("vocab_size: compiled model expects a", e.Message);
        }
    }

    [Fact]
    public void Llama2cHeaderProblemsAreRejected()
    {
        string path = Path.Combine(_dir, "bad.bin");
        void Expect(byte[] bytes, string message)
        {
            File.WriteAllBytes(path, bytes);
            var e = Assert.Throws<ModelFormatException>(() => ModelWeights.Open(path));
            Assert.Contains(path, e.Message);
            Assert.Contains(message, e.Message);
        }
        byte[] valid = ValidLlama2c(shared: true);
        byte[] With(int field, int value)
        {
            byte[] copy = (byte[])valid.Clone();
            BinaryPrimitives.WriteInt32LittleEndian(copy.AsSpan(4 * field), value);
            return copy;
        }

        Expect(valid.AsSpan(0, 20).ToArray(), "a llama2.c checkpoint starts with a 28-byte header");
        Expect(valid.AsSpan(0, valid.Length - 4).ToArray(), $"describes a {valid.Length}-byte file, but the file is {valid.Length - 4} bytes");
        Expect([.. valid, 0, 0, 0, 0], $"but the file is {valid.Length + 4} bytes");
        Expect(With(0, 0x616b3432), "llama2.c version 1/2 export");
        Expect(With(0, -32), "has values that must be positive");
        Expect(With(5, 0), "has values that must be positive");
        Expect(With(3, 3), "n_heads must divide dim");
        Expect(With(4, 3), "n_heads must divide dim and n_kv_heads must divide n_heads");
        Expect(With(2, int.MaxValue), "describes a");
        Expect(With(0, 1 << 30), "describes more data than any file can hold");
    }

    [Fact]
    public void Llama2cMutationsOnlyEverThrowModelFormatException()
    {
        byte[][] bases = [ValidLlama2c(shared: true), ValidLlama2c(shared: false)];
        string path = Path.Combine(_dir, "fuzz.bin");
        var random = new Random(2_7182);
        int opened = 0, rejected = 0, tensorsRead = 0, copiesOpened = 0, copiesRead = 0;
        int[] interesting = [0, 1, -1, 2, 3, 6, -6, 7, 8, 16, 31, 32, 33, 64, 255, 4096, 65536, 1 << 20, 1 << 30, int.MaxValue, int.MinValue, int.MinValue + 1, 0x616b3432];
        var clock = Stopwatch.StartNew();

        for (int iteration = 0; iteration < Iterations; iteration++)
        {
            bool shared = random.Next(2) == 0;
            byte[] bytes = (byte[])bases[shared ? 0 : 1].Clone();
            int kind = random.Next(6);
            switch (kind)
            {
                case 0: // truncate
                    Array.Resize(ref bytes, random.Next(2) == 0 ? random.Next(40) : random.Next(bytes.Length));
                    break;
                case 1: // flip bytes anywhere
                    for (int n = random.Next(1, 9); n > 0; n--)
                        bytes[random.Next(bytes.Length)] ^= (byte)random.Next(1, 256);
                    break;
                case 2: // a header field lies
                case 3:
                    for (int n = kind - 1; n > 0; n--)
                    {
                        int field = random.Next(7);
                        int old = BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(4 * field));
                        int value = random.Next(4) switch
                        {
                            0 => old + random.Next(-2, 3),
                            1 => -old,
                            2 => random.Next(int.MinValue, int.MaxValue),
                            _ => interesting[random.Next(interesting.Length)],
                        };
                        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(4 * field), value);
                    }
                    break;
                case 4: // bytes appended
                    bytes = [.. bytes, .. new byte[random.Next(2) == 0 ? 4 * random.Next(1, 300) : random.Next(1, 100)]];
                    break;
                default: // bytes removed from the middle
                    int at = random.Next(28, bytes.Length);
                    bytes = [.. bytes.AsSpan(0, at), .. bytes.AsSpan(Math.Min(bytes.Length, at + 4 * random.Next(1, 64)))];
                    break;
            }
            File.WriteAllBytes(path, bytes);

            try
            {
                var shape = new LlamaModelShape(32, 8, 1, 2, 1, 16, 6, 2, 1e-5f, 10000f, shared, 1, [2]);
                WeightLoading? loading = Loading(iteration);
                using ModelWeights weights = loading is { } l ? ModelWeights.Open(path, shape, l) : ModelWeights.Open(path);
                opened++;
                copiesOpened += loading == WeightLoading.Copy ? 1 : 0;
                foreach ((string name, int rows, int cols) in Llama2cTensors)
                {
                    int read = ReadEverything(weights, name, rows, cols);
                    tensorsRead += read;
                    copiesRead += loading == WeightLoading.Copy ? read : 0;
                }
                Tolerate(weights.ThrowIfUnusedTensors);
            }
            catch (ModelFormatException)
            {
                rejected++;
            }
            catch (Exception e)
            {
                Assert.Fail($"iteration {iteration}, mutation {kind}, {Loading(iteration)?.ToString() ?? "no shape"}: {e}");
            }
        }

        output.WriteLine($"opened {opened} (copied {copiesOpened}), rejected {rejected}, tensor reads {tensorsRead} (from copies {copiesRead}), {clock.Elapsed}");
        Assert.True(opened > 1000, $"only {opened} mutations opened");
        Assert.True(copiesOpened > 200, $"only {copiesOpened} mutations opened with WeightLoading.Copy");
        Assert.True(copiesRead > 2000, $"only {copiesRead} tensor reads from copies");
        Assert.True(rejected > 3000, $"only {rejected} mutations were rejected");
        Assert.True(tensorsRead > 10000, $"{tensorsRead}");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), $"{clock.Elapsed}");
    }
}
