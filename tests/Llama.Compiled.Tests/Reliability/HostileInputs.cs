using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using Llama.Compiled.Tools;

namespace Llama.Compiled.Tests;

/// <summary>
/// Model paths a user (or an attacker) might hand to <c>Load</c> or to the samples' <c>--model</c>:
/// each case builds its input in a temp folder and returns the path to pass.
/// </summary>
internal static class HostileInputs
{
    /// <summary>Every case name, for theories. The 4 GB sparse files are separate (<see cref="SparseZeros"/>).</summary>
    public static readonly string[] Names =
    [
        "missing-folder", "missing-file.safetensors", "missing-file.gguf", "missing-file.bin",
        "empty-folder", "folder-without-weights", "folder-named.safetensors",
        "empty-model.safetensors-in-folder", "empty.safetensors", "empty.gguf", "empty.bin",
        "random.safetensors", "random.gguf", "random.bin", "random-header.safetensors",
        "truncated.safetensors", "truncated.gguf", "truncated.bin", "corrupted-header.safetensors",
        "other-shape.safetensors", "other-shape.gguf", "other-shape.bin",
        "unknown-tensor.safetensors", "missing-tensor.safetensors",
        "unsupported-extension.onnx", "two-gguf-in-folder", "index-missing-shard",
        "symlink-loop", "symlink-loop/model.safetensors", "symlink-loop.safetensors", "self-symlink",
        "dev-null.bin", "dev-zero.gguf", "fifo.bin", "fifo-in-folder",
    ];

    public static IEnumerable<object[]> Theory => Names.Select(n => new object[] { n });

    /// <summary>Builds case <paramref name="name"/> in <paramref name="folder"/> and returns the model path to load.</summary>
    public static string Create(string name, TempFolder folder)
    {
        string path = folder.File(name.Replace('/', '_'));
        switch (name)
        {
            case "missing-folder":
                return folder.File("no-such-model");
            case "missing-file.safetensors":
            case "missing-file.gguf":
            case "missing-file.bin":
                return path;
            case "empty-folder":
                Directory.CreateDirectory(path);
                return path;
            case "folder-without-weights":
                // What a user gets by pointing at a folder that has only the config and tokenizer.
                Directory.CreateDirectory(path);
                File.Copy(Path.Combine(TestPaths.Stories260KHf, "config.json"), Path.Combine(path, "config.json"));
                File.Copy(Path.Combine(TestPaths.Stories260KHf, "tokenizer.model"), Path.Combine(path, "tokenizer.model"));
                File.WriteAllText(Path.Combine(path, "tokenizer.bin"), "not weights");
                return path;
            case "folder-named.safetensors":
                Directory.CreateDirectory(path);
                return path;
            case "empty-model.safetensors-in-folder":
                Directory.CreateDirectory(path);
                File.Create(Path.Combine(path, "model.safetensors")).Dispose();
                return path;
            case "empty.safetensors":
            case "empty.gguf":
            case "empty.bin":
                File.Create(path).Dispose();
                return path;
            case "random.safetensors":
            case "random.gguf":
            case "random.bin":
            {
                byte[] bytes = new byte[1 << 20];
                new Random(name.Length).NextBytes(bytes);
                File.WriteAllBytes(path, bytes);
                return path;
            }
            case "random-header.safetensors":
            {
                // A plausible header length, then bytes that are not JSON.
                byte[] bytes = new byte[4096];
                new Random(5).NextBytes(bytes);
                BitConverter.GetBytes(1000UL).CopyTo(bytes, 0);
                File.WriteAllBytes(path, bytes);
                return path;
            }
            case "truncated.safetensors":
                CopyPrefix(Path.Combine(TestPaths.Stories260KHf, "model.safetensors"), path, 0.6);
                return path;
            case "truncated.gguf":
                CopyPrefix(Path.Combine(TestPaths.Stories260K, "stories260K-f32.gguf"), path, 0.6);
                return path;
            case "truncated.bin":
                CopyPrefix(Path.Combine(TestPaths.Stories260K, "stories260K.bin"), path, 0.6);
                return path;
            case "corrupted-header.safetensors":
            {
                byte[] bytes = File.ReadAllBytes(Path.Combine(TestPaths.Stories260KHf, "model.safetensors"));
                // Overwrite part of the JSON header (it starts at byte 8) with noise.
                var rng = new Random(9);
                for (int i = 200; i < 260; i++)
                    bytes[i] = (byte)rng.Next(32, 127);
                File.WriteAllBytes(path, bytes);
                return path;
            }
            case "other-shape.safetensors":
                WriteSafetensors(path, OtherShape, extra: null, skip: null);
                return path;
            case "other-shape.gguf":
                GgufWriter.WriteLlama(path, OtherShape, Tensors(OtherShape));
                return path;
            case "other-shape.bin":
                WriteLlama2cZeros(path, OtherShape);
                return path;
            case "unknown-tensor.safetensors":
                WriteSafetensors(path, Stories260KShape, extra: "model.layers.5.self_attn.q_proj.weight", skip: null);
                return path;
            case "missing-tensor.safetensors":
                WriteSafetensors(path, Stories260KShape, extra: null, skip: "model.layers.3.mlp.up_proj.weight");
                return path;
            case "unsupported-extension.onnx":
                File.WriteAllBytes(path, new byte[100]);
                return path;
            case "two-gguf-in-folder":
                Directory.CreateDirectory(path);
                File.Copy(Path.Combine(TestPaths.Stories260K, "stories260K-f32.gguf"), Path.Combine(path, "a.gguf"));
                File.Copy(Path.Combine(TestPaths.Stories260K, "stories260K-f32.gguf"), Path.Combine(path, "b.gguf"));
                return path;
            case "index-missing-shard":
                Directory.CreateDirectory(path);
                File.WriteAllText(Path.Combine(path, "model.safetensors.index.json"),
                    """{"metadata":{},"weight_map":{"model.norm.weight":"model-00001-of-00002.safetensors"}}""");
                return path;
            case "symlink-loop":
                Directory.CreateSymbolicLink(folder.File("loop-b"), folder.File("symlink-loop"));
                Directory.CreateSymbolicLink(folder.File("symlink-loop"), folder.File("loop-b"));
                return folder.File("symlink-loop");
            case "symlink-loop/model.safetensors":
                Directory.CreateSymbolicLink(folder.File("loop-b"), folder.File("symlink-loop"));
                Directory.CreateSymbolicLink(folder.File("symlink-loop"), folder.File("loop-b"));
                return Path.Combine(folder.File("symlink-loop"), "model.safetensors");
            case "symlink-loop.safetensors":
                File.CreateSymbolicLink(folder.File("loop-b.safetensors"), path);
                File.CreateSymbolicLink(path, folder.File("loop-b.safetensors"));
                return path;
            case "self-symlink":
                Directory.CreateSymbolicLink(path, path);
                return path;
            case "dev-null.bin":
                File.CreateSymbolicLink(path, "/dev/null");
                return path;
            case "dev-zero.gguf":
                File.CreateSymbolicLink(path, "/dev/zero");
                return path;
            case "fifo.bin":
                MakeFifo(path);
                return path;
            case "fifo-in-folder":
                Directory.CreateDirectory(path);
                MakeFifo(Path.Combine(path, "model.safetensors"));
                return path;
            default:
                throw new ArgumentException("unknown case " + name, nameof(name));
        }
    }

    /// <summary>Creates a 4 GB sparse file of zeros named <paramref name="fileName"/>, or a folder holding one as model.safetensors.</summary>
    public static string SparseZeros(string fileName, TempFolder folder)
    {
        string path = folder.File(fileName);
        string file = path;
        if (!Path.HasExtension(fileName))
        {
            Directory.CreateDirectory(path);
            file = Path.Combine(path, "model.safetensors");
        }
        using (FileStream stream = File.Create(file))
            stream.SetLength(4L << 30);
        return path;
    }

    /// <summary>The exception types a hostile path may produce: all clear, documented, and caught by the samples.</summary>
    public static bool IsClearLoadFailure(Exception e) =>
        e is ModelFormatException or FileNotFoundException or DirectoryNotFoundException or UnauthorizedAccessException or IOException;

    private static void CopyPrefix(string from, string to, double fraction)
    {
        byte[] bytes = File.ReadAllBytes(from);
        File.WriteAllBytes(to, bytes.AsSpan(0, (int)(bytes.Length * fraction)).ToArray());
    }

    public static readonly LlamaModelShape Stories260KShape = Stories260K.CompiledShape;

    /// <summary>A stories260K-like model of half the width: the file of "another model".</summary>
    public static readonly LlamaModelShape OtherShape = Stories260K.CompiledShape with
    {
        HiddenSize = 32, IntermediateSize = 86, HeadCount = 4, KvHeadCount = 2, HeadDim = 8,
    };

    /// <summary>Every tensor of a llama model of <paramref name="shape"/> by Hugging Face name, small random values.</summary>
    public static Dictionary<string, float[]> Tensors(LlamaModelShape shape)
    {
        var rng = new Random(shape.HiddenSize);
        float[] Values(long count) => Enumerable.Range(0, (int)count).Select(_ => (float)(rng.NextDouble() - 0.5) * 0.1f).ToArray();
        var tensors = new Dictionary<string, float[]>(StringComparer.Ordinal);
        foreach ((string name, long[] dims) in Layout(shape))
            tensors[name] = Values(dims.Aggregate(1L, (a, b) => a * b));
        return tensors;
    }

    /// <summary>The Hugging Face tensors of a llama model of <paramref name="shape"/>, in file order.</summary>
    public static List<(string Name, long[] Shape)> Layout(LlamaModelShape shape)
    {
        int q = shape.HeadCount * shape.HeadDim, kv = shape.KvHeadCount * shape.HeadDim;
        var layout = new List<(string, long[])> { ("model.embed_tokens.weight", [shape.VocabSize, shape.HiddenSize]) };
        for (int l = 0; l < shape.LayerCount; l++)
        {
            string p = $"model.layers.{l}.";
            layout.Add((p + "input_layernorm.weight", [shape.HiddenSize]));
            layout.Add((p + "self_attn.q_proj.weight", [q, shape.HiddenSize]));
            layout.Add((p + "self_attn.k_proj.weight", [kv, shape.HiddenSize]));
            layout.Add((p + "self_attn.v_proj.weight", [kv, shape.HiddenSize]));
            layout.Add((p + "self_attn.o_proj.weight", [shape.HiddenSize, q]));
            layout.Add((p + "post_attention_layernorm.weight", [shape.HiddenSize]));
            layout.Add((p + "mlp.gate_proj.weight", [shape.IntermediateSize, shape.HiddenSize]));
            layout.Add((p + "mlp.up_proj.weight", [shape.IntermediateSize, shape.HiddenSize]));
            layout.Add((p + "mlp.down_proj.weight", [shape.HiddenSize, shape.IntermediateSize]));
        }
        layout.Add(("model.norm.weight", [shape.HiddenSize]));
        return layout;
    }

    /// <summary>A safetensors model of <paramref name="shape"/>, plus an <paramref name="extra"/> tensor or without <paramref name="skip"/>.</summary>
    public static void WriteSafetensors(string path, LlamaModelShape shape, string? extra, string? skip, Func<string, float[], float[]>? values = null)
    {
        Dictionary<string, float[]> tensors = Tensors(shape);
        var layout = Layout(shape).Where(t => t.Name != skip).ToList();
        if (extra is not null)
        {
            layout.Add((extra, [shape.HeadCount * shape.HeadDim, shape.HiddenSize]));
            tensors[extra] = new float[shape.HeadCount * shape.HeadDim * shape.HiddenSize];
        }
        using var writer = new SafetensorsWriter(path);
        writer.AddMetadata("format", "pt");
        foreach ((string name, long[] dims) in layout)
            writer.AddTensor(name, "F32", dims);
        foreach ((string name, _) in layout)
            writer.WriteTensorData(name, values is null ? tensors[name] : values(name, tensors[name]));
        writer.Finish();
    }

    /// <summary>A llama2.c legacy checkpoint of <paramref name="shape"/> of the right size, all weights zero (sparse).</summary>
    private static void WriteLlama2cZeros(string path, LlamaModelShape shape)
    {
        long dim = shape.HiddenSize, hidden = shape.IntermediateSize, kvDim = shape.KvHeadCount * shape.HeadDim;
        long perLayer = dim + dim * dim + 2 * kvDim * dim + dim * dim + dim + 3 * hidden * dim;
        long floats = shape.VocabSize * dim + shape.LayerCount * perLayer + dim + 2 * (shape.MaxContext * shape.HeadDim / 2);
        using FileStream stream = File.Create(path);
        foreach (int field in new[] { shape.HiddenSize, shape.IntermediateSize, shape.LayerCount, shape.HeadCount, shape.KvHeadCount, shape.VocabSize, shape.MaxContext })
            stream.Write(BitConverter.GetBytes(field));
        stream.SetLength(7 * sizeof(int) + floats * sizeof(float));
    }

    private static void MakeFifo(string path)
    {
        if (mkfifo(path, Convert.ToUInt32("644", 8)) != 0)
            throw new IOException($"mkfifo {path} failed: errno {Marshal.GetLastPInvokeError()}");
    }

    [DllImport("libc", SetLastError = true)]
#pragma warning disable SYSLIB1054 // LibraryImport needs unsafe code, which this test project does not enable
    private static extern int mkfifo([MarshalAs(UnmanagedType.LPUTF8Str)] string path, uint mode);
#pragma warning restore SYSLIB1054
}
