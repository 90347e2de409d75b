using System;
using System.Collections.Generic;
using System.IO;
using Llama.Compiled;
using Llama.Compiled.LlamaCpp;
using Llama.Compiled.Tools;

namespace LlamaBench;

// Each benchmarked shape compiled once per format it is measured in: F32 and Q8_0 kernels over the files the project's
// writer makes, and llama.cpp's Q4_K_M and Q4_0 mixes over the files llama.cpp's own quantizer makes from the F32 one.

[LlamaModel("stories260K/hf/config.json")]
public partial class Stories260K;

[LlamaModel("stories260K/hf/config.json", Weights = WeightFormat.Q8_0)]
public partial class Stories260KQ8;

[LlamaModel("Models/stories15M/config.json")]
public partial class Stories15M;

[LlamaModel("Models/stories15M/config.json", Weights = WeightFormat.Q8_0)]
public partial class Stories15MQ8;

[LlamaModel("Models/stories110M/config.json")]
public partial class Stories110M;

[LlamaModel("Models/stories110M/config.json", Weights = WeightFormat.Q8_0)]
public partial class Stories110MQ8;

[LlamaModel("Models/stories110M/config.json", Weights = WeightFormat.Q4_K_M)]
public partial class Stories110MQ4KM;

[LlamaModel("Models/stories110M/config.json", Weights = WeightFormat.MostlyQ4_0)]
public partial class Stories110MQ4;

[LlamaModel("Models/tinyllama-1.1b/config.json")]
public partial class TinyLlama;

[LlamaModel("Models/tinyllama-1.1b/config.json", Weights = WeightFormat.Q8_0)]
public partial class TinyLlamaQ8;

[LlamaModel("Models/tinyllama-1.1b/config.json", Weights = WeightFormat.Q4_K_M)]
public partial class TinyLlamaQ4KM;

[LlamaModel("Models/tinyllama-1.1b/config.json", Weights = WeightFormat.MostlyQ4_0)]
public partial class TinyLlamaQ4;

[LlamaModel("Models/llama-3.2-1b/config.json", Weights = WeightFormat.Q8_0)]
public partial class Llama32Q8;

[LlamaModel("Models/llama-3.2-1b/config.json", Weights = WeightFormat.Q4_K_M)]
public partial class Llama32Q4KM;

[LlamaModel("Models/llama-3.2-1b/config.json", Weights = WeightFormat.MostlyQ4_0)]
public partial class Llama32Q4;

/// <summary>A loaded compiled model and a way to open sessions with options (threads, KV cache format).</summary>
internal sealed record LoadedModel(IDisposable Model, Func<SessionOptions, ILlamaSession> CreateSession);

/// <summary>A benchmarked model: its compiled shape, its compiled classes per format and where its GGUF files come from.</summary>
internal sealed class BenchModel(string name, LlamaModelShape shape, bool random, IReadOnlyDictionary<WeightFormat, Func<string, WeightLoading, LoadedModel>> loaders)
{
    /// <summary>
    /// Bump when the random weights or the writer's output change, so stale cached files are not reused. v2: the shapes'
    /// context went to 4096 (for --depth), and a file's context_length must hold the compiled one.
    /// </summary>
    private const string CacheVersion = "v2";

    public string Name { get; } = name;

    public LlamaModelShape Shape { get; } = shape;

    /// <summary>True for random weights written into the cache; false for the real stories260K in ../shared.</summary>
    public bool IsRandom { get; } = random;

    /// <summary>True when the bench compiles this model in <paramref name="format"/>.</summary>
    public bool Has(WeightFormat format) => loaders.ContainsKey(format);

    public LoadedModel Load(WeightFormat format, string path, WeightLoading loading) => loaders[format](path, loading);

    /// <summary>The format's name in the table and on the command line: llama-quantize's name for the llama.cpp mixes.</summary>
    public static string FormatName(WeightFormat format) => format == WeightFormat.MostlyQ4_0 ? "Q4_0" : format.ToString();

    /// <summary>
    /// The GGUF file of this model in <paramref name="format"/>: the shared file, or the cached random one (written if missing). F32 and
    /// Q8_0 files are the project's writer's; the Q4_K_M and Q4_0 files are what llama.cpp's quantizer makes of the F32 one.
    /// </summary>
    public string GgufPath(WeightFormat format, string cacheDir, Action<string> log)
    {
        string suffix = FormatName(format).ToLowerInvariant();
        if (!IsRandom)
            return Path.Combine(SharedModels(), "stories260K", $"stories260K-{suffix}.gguf");
        string path = Path.Combine(cacheDir, $"{Name}-{CacheVersion}-{suffix}.gguf");
        if (File.Exists(path))
            return path;
        if (format is WeightFormat.F32 or WeightFormat.Q8_0)
        {
            log($"writing random weights of {Name} as {suffix} to {path} (once; reused by later runs)");
            RandomLlama.WriteGguf(path, Shape, seed: 1, format == WeightFormat.F32 ? GgufTensorType.F32 : GgufTensorType.Q8_0, Name);
            return path;
        }
        string f32 = GgufPath(WeightFormat.F32, cacheDir, log);
        log($"quantizing {Path.GetFileName(f32)} to {FormatName(format)} with llama.cpp's quantizer into {path} (once)");
        string partial = path + ".partial";
        LlamaCppOracle.Quantize(f32, partial, FormatName(format));
        File.Move(partial, path, overwrite: true);
        return path;
    }

    /// <summary>
    /// Bytes one engine reads per generated token: every matrix in the format it computes with (Q8_0 matrices
    /// whose rows are not 32-blocks are F32 in the compiled model and F16 in the GGUF file llama.cpp uses), the
    /// norms, one embedding row, and the KV cache up to <paramref name="position"/> in <paramref name="kvCache"/>'s format.
    /// </summary>
    public double BytesPerToken(WeightFormat format, KvCacheFormat kvCache, bool llamaCpp, double position)
    {
        LlamaModelShape s = Shape;
        int q = s.HeadCount * s.HeadDim, kv = s.KvHeadCount * s.HeadDim;
        double Matrix(LlamaTensor tensor, int layer, long rows, int cols)
        {
            if (format == WeightFormat.F32)
                return rows * 4.0 * cols;
            if (format == WeightFormat.Q8_0)
                return cols % 32 != 0 ? rows * (llamaCpp ? 2.0 : 4.0) * cols : rows * (cols / 32) * 34.0;
            // The llama.cpp mixes: both engines read the file's blocks as they are.
            var stored = (WeightFormat)QuantizationMix.TensorFormat((QuantizationFormat)format, tensor, layer, s.LayerCount, cols, s.HeadCount / s.KvHeadCount, s.TiedEmbeddings);
            return rows * (double)BlockQuantization.RowBytes(stored, cols);
        }
        double total = Matrix(LlamaTensor.Classifier, -1, s.VocabSize, s.HiddenSize) + 4.0 * s.HiddenSize * 2;
        for (int layer = 0; layer < s.LayerCount; layer++)
        {
            total += Matrix(LlamaTensor.Query, layer, q, s.HiddenSize) + Matrix(LlamaTensor.Key, layer, kv, s.HiddenSize) + Matrix(LlamaTensor.Value, layer, kv, s.HiddenSize)
                + Matrix(LlamaTensor.AttentionOutput, layer, s.HiddenSize, q) + Matrix(LlamaTensor.Gate, layer, s.IntermediateSize, s.HiddenSize)
                + Matrix(LlamaTensor.Up, layer, s.IntermediateSize, s.HiddenSize) + Matrix(LlamaTensor.Down, layer, s.HiddenSize, s.IntermediateSize)
                + 2 * 4.0 * s.HiddenSize;
        }
        double kvBytes = 2.0 * s.LayerCount * kv * position * KvBytesPerValue(kvCache, llamaCpp);
        return total + kvBytes;
    }

    /// <summary>
    /// Bytes one cached key or value takes in <paramref name="kvCache"/>'s format. Q8_0: llama.cpp's blocks are 32 int8 values
    /// and an F16 scale (34 / 32); ours keep an F32 scale per block of 32, or per head when the head is not made of 32-blocks
    /// (<see cref="Llama.Compiled.CompilerServices.KvCache.Q8BlockSize"/>; llama.cpp refuses such heads).
    /// </summary>
    private double KvBytesPerValue(KvCacheFormat kvCache, bool llamaCpp)
    {
        int q8Block = Shape.HeadDim % 32 == 0 ? 32 : Shape.HeadDim;
        return kvCache switch
        {
            KvCacheFormat.F32 => 4.0,
            KvCacheFormat.F16 => 2.0,
            _ => llamaCpp ? 34.0 / 32 : 1.0 + 4.0 / q8Block,
        };
    }

    /// <summary>
    /// Multiply-adds per token of a prompt of <paramref name="tokens"/> tokens evaluated after <paramref name="depth"/> tokens
    /// in the KV cache, with logits for its last token only (as both engines' pp runs ask): every token goes through every
    /// layer's matrices (q, k, v, o, gate, up, down) and through causal attention (q·k and p·v over the positions up to its
    /// own; the prompt's tokens attend on average to depth + (tokens + 1) / 2), and the classifier runs once per prompt.
    /// Norms, RoPE, softmax and SiLU are not multiply-adds of a matrix product and are left out.
    /// </summary>
    public double PromptMultiplyAddsPerToken(int depth, int tokens)
    {
        LlamaModelShape s = Shape;
        double q = s.HeadCount * s.HeadDim, kv = s.KvHeadCount * s.HeadDim, hidden = s.HiddenSize;
        double matrices = s.LayerCount * (hidden * (q + 2 * kv) + q * hidden + 3 * hidden * s.IntermediateSize);
        double attention = s.LayerCount * 2 * q * (depth + (tokens + 1) / 2.0);
        double classifier = hidden * s.VocabSize / tokens;
        return matrices + attention + classifier;
    }

    public static IReadOnlyList<BenchModel> All { get; } =
    [
        new("stories260K", Stories260K.CompiledShape, random: false, new Dictionary<WeightFormat, Func<string, WeightLoading, LoadedModel>>
        {
            [WeightFormat.F32] = (p, l) => Loaded(Stories260K.Load(p, l), m => o => m.CreateSession(o)),
            [WeightFormat.Q8_0] = (p, l) => Loaded(Stories260KQ8.Load(p, l), m => o => m.CreateSession(o)),
        }),
        new("stories15M", Stories15M.CompiledShape, random: true, new Dictionary<WeightFormat, Func<string, WeightLoading, LoadedModel>>
        {
            [WeightFormat.F32] = (p, l) => Loaded(Stories15M.Load(p, l), m => o => m.CreateSession(o)),
            [WeightFormat.Q8_0] = (p, l) => Loaded(Stories15MQ8.Load(p, l), m => o => m.CreateSession(o)),
        }),
        new("stories110M", Stories110M.CompiledShape, random: true, new Dictionary<WeightFormat, Func<string, WeightLoading, LoadedModel>>
        {
            [WeightFormat.F32] = (p, l) => Loaded(Stories110M.Load(p, l), m => o => m.CreateSession(o)),
            [WeightFormat.Q8_0] = (p, l) => Loaded(Stories110MQ8.Load(p, l), m => o => m.CreateSession(o)),
            [WeightFormat.Q4_K_M] = (p, l) => Loaded(Stories110MQ4KM.Load(p, l), m => o => m.CreateSession(o)),
            [WeightFormat.MostlyQ4_0] = (p, l) => Loaded(Stories110MQ4.Load(p, l), m => o => m.CreateSession(o)),
        }),
        new("tinyllama-1.1b", TinyLlama.CompiledShape, random: true, new Dictionary<WeightFormat, Func<string, WeightLoading, LoadedModel>>
        {
            [WeightFormat.F32] = (p, l) => Loaded(TinyLlama.Load(p, l), m => o => m.CreateSession(o)),
            [WeightFormat.Q8_0] = (p, l) => Loaded(TinyLlamaQ8.Load(p, l), m => o => m.CreateSession(o)),
            [WeightFormat.Q4_K_M] = (p, l) => Loaded(TinyLlamaQ4KM.Load(p, l), m => o => m.CreateSession(o)),
            [WeightFormat.MostlyQ4_0] = (p, l) => Loaded(TinyLlamaQ4.Load(p, l), m => o => m.CreateSession(o)),
        }),
        new("llama-3.2-1b", Llama32Q8.CompiledShape, random: true, new Dictionary<WeightFormat, Func<string, WeightLoading, LoadedModel>>
        {
            [WeightFormat.Q8_0] = (p, l) => Loaded(Llama32Q8.Load(p, l), m => o => m.CreateSession(o)),
            [WeightFormat.Q4_K_M] = (p, l) => Loaded(Llama32Q4KM.Load(p, l), m => o => m.CreateSession(o)),
            [WeightFormat.MostlyQ4_0] = (p, l) => Loaded(Llama32Q4.Load(p, l), m => o => m.CreateSession(o)),
        }),
    ];

    private static LoadedModel Loaded<T>(T model, Func<T, Func<SessionOptions, ILlamaSession>> sessions) where T : IDisposable =>
        new(model, sessions(model));

    private static string SharedModels()
    {
        for (string? dir = AppContext.BaseDirectory; dir is not null; dir = Path.GetDirectoryName(dir))
        {
            string candidate = Path.Combine(dir, "..", "shared", "models");
            if (File.Exists(Path.Combine(dir, "Llama.Compiled.sln")) && Directory.Exists(candidate))
                return Path.GetFullPath(candidate);
        }
        // Run from elsewhere (a published binary): the current directory's ../shared/models, as the Stories sample does.
        return Path.GetFullPath(Path.Combine("..", "shared", "models"));
    }
}
