using System;
using System.Collections.Generic;
using System.IO;
using Llama.Compiled;
using Llama.Compiled.Tools;

namespace LlamaBench;

// Each benchmarked shape compiled twice: F32 kernels and Q8_0 kernels.

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

[LlamaModel("Models/tinyllama-1.1b/config.json")]
public partial class TinyLlama;

[LlamaModel("Models/tinyllama-1.1b/config.json", Weights = WeightFormat.Q8_0)]
public partial class TinyLlamaQ8;

/// <summary>A loaded compiled model and a way to open sessions with a thread count.</summary>
internal sealed record LoadedModel(IDisposable Model, Func<int, ILlamaSession> CreateSession);

/// <summary>A benchmarked model: its compiled shape, its compiled classes and where its GGUF files come from.</summary>
internal sealed class BenchModel(string name, LlamaModelShape shape, bool random, Func<string, WeightLoading, LoadedModel> loadF32, Func<string, WeightLoading, LoadedModel> loadQ8)
{
    /// <summary>Bump when the random weights or the writer's output change, so stale cached files are not reused.</summary>
    private const string CacheVersion = "v1";

    public string Name { get; } = name;

    public LlamaModelShape Shape { get; } = shape;

    /// <summary>True for random weights written into the cache; false for the real stories260K in ../shared.</summary>
    public bool IsRandom { get; } = random;

    public LoadedModel Load(WeightFormat format, string path, WeightLoading loading) => format switch
    {
        WeightFormat.F32 => loadF32(path, loading),
        WeightFormat.Q8_0 => loadQ8(path, loading),
        _ => throw new ArgumentOutOfRangeException(nameof(format), format, "the bench compiles F32 and Q8_0 only"),
    };

    /// <summary>The GGUF file of this model in <paramref name="format"/>: the shared file, or the cached random one (written if missing).</summary>
    public string GgufPath(WeightFormat format, string cacheDir, Action<string> log)
    {
        string suffix = format == WeightFormat.F32 ? "f32" : "q8_0";
        if (!IsRandom)
            return Path.Combine(SharedModels(), "stories260K", $"stories260K-{suffix}.gguf");
        string path = Path.Combine(cacheDir, $"{Name}-{CacheVersion}-{suffix}.gguf");
        if (!File.Exists(path))
        {
            log($"writing random weights of {Name} as {suffix} to {path} (once; reused by later runs)");
            RandomLlama.WriteGguf(path, Shape, seed: 1, format == WeightFormat.F32 ? GgufTensorType.F32 : GgufTensorType.Q8_0, Name);
        }
        return path;
    }

    /// <summary>
    /// Bytes one engine reads per generated token: every matrix in the format it computes with (Q8_0 matrices
    /// whose rows are not 32-blocks are F32 in the compiled model and F16 in the GGUF file llama.cpp uses), the
    /// norms, one embedding row, and the F32 KV cache up to <paramref name="position"/>.
    /// </summary>
    public double BytesPerToken(WeightFormat format, bool llamaCpp, double position)
    {
        LlamaModelShape s = Shape;
        int q = s.HeadCount * s.HeadDim, kv = s.KvHeadCount * s.HeadDim;
        double Matrix(long rows, int cols)
        {
            if (format == WeightFormat.F32)
                return rows * 4.0 * cols;
            if (cols % 32 != 0)
                return rows * (llamaCpp ? 2.0 : 4.0) * cols;
            return rows * (cols / 32) * 34.0;
        }
        double layer = Matrix(q, s.HiddenSize) + 2 * Matrix(kv, s.HiddenSize) + Matrix(s.HiddenSize, q)
            + 2 * Matrix(s.IntermediateSize, s.HiddenSize) + Matrix(s.HiddenSize, s.IntermediateSize)
            + 2 * 4.0 * s.HiddenSize;
        double kvCache = 2.0 * s.LayerCount * kv * position * 4;
        return s.LayerCount * layer + Matrix(s.VocabSize, s.HiddenSize) + 4.0 * s.HiddenSize * 2 + kvCache;
    }

    public static IReadOnlyList<BenchModel> All { get; } =
    [
        new("stories260K", Stories260K.CompiledShape, random: false,
            (p, l) => Loaded(Stories260K.Load(p, l), m => t => m.CreateSession(new SessionOptions { Threads = t })),
            (p, l) => Loaded(Stories260KQ8.Load(p, l), m => t => m.CreateSession(new SessionOptions { Threads = t }))),
        new("stories15M", Stories15M.CompiledShape, random: true,
            (p, l) => Loaded(Stories15M.Load(p, l), m => t => m.CreateSession(new SessionOptions { Threads = t })),
            (p, l) => Loaded(Stories15MQ8.Load(p, l), m => t => m.CreateSession(new SessionOptions { Threads = t }))),
        new("stories110M", Stories110M.CompiledShape, random: true,
            (p, l) => Loaded(Stories110M.Load(p, l), m => t => m.CreateSession(new SessionOptions { Threads = t })),
            (p, l) => Loaded(Stories110MQ8.Load(p, l), m => t => m.CreateSession(new SessionOptions { Threads = t }))),
        new("tinyllama-1.1b", TinyLlama.CompiledShape, random: true,
            (p, l) => Loaded(TinyLlama.Load(p, l), m => t => m.CreateSession(new SessionOptions { Threads = t })),
            (p, l) => Loaded(TinyLlamaQ8.Load(p, l), m => t => m.CreateSession(new SessionOptions { Threads = t }))),
    ];

    private static LoadedModel Loaded<T>(T model, Func<T, Func<int, ILlamaSession>> sessions) where T : IDisposable =>
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
