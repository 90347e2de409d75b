using System;
using System.Collections.Generic;
using System.Diagnostics.CodeAnalysis;
using System.IO;
using System.Text;
using LLama;
using LLama.Common;
using LLama.Native;

namespace Llama.Compiled.LlamaCpp;

/// <summary>
/// llama.cpp (LLamaSharp 0.30.0, CPU backend) as an oracle: loads a GGUF file, evaluates tokens at the
/// next position of one sequence and returns exact logits. Set up for reproducible numbers: flash
/// attention off (LLamaSharp's default "auto" turns it on for CPU, which changes logits by ~1e-3),
/// F32 K and V caches, no GPU layers, a fixed thread count for both decode and batch evaluation.
/// </summary>
/// <remarks>
/// Shared by the oracle tests and samples/LlamaBench. A native library that cannot be loaded throws
/// <see cref="LlamaCppUnavailableException"/> with llama.cpp's own load log, so a test fails with the
/// reason instead of being skipped.
/// </remarks>
public sealed class LlamaCppOracle : IDisposable
{
    private static readonly object Gate = new();
    private static readonly Queue<string> RecentLog = new();
    private static bool _loaded;
    private static string? _failure;
    private static string? _libraryPath;

    private readonly LLamaWeights _weights;
    private readonly LLamaContext _context;
    private readonly LLamaBatch _batch = new();
    private readonly int _vocabSize;
    private int _lastBatchCount;
    private bool _disposed;

    /// <summary>Loads <paramref name="ggufPath"/> and creates a context of <paramref name="contextSize"/> positions.</summary>
    /// <param name="ggufPath">The model file.</param>
    /// <param name="threads">Threads for single-token decode and for batches (llama.cpp's -t and -tb).</param>
    /// <param name="contextSize">KV cache positions; 0 takes the model's context length.</param>
    /// <param name="batchSize">The most tokens one <see cref="Evaluate"/> call may take (n_batch = n_ubatch).</param>
    /// <param name="kvCache">
    /// The K and V cache type (default F32, exact). llama.cpp refuses a quantized V cache without flash attention, so a
    /// quantized type also turns flash attention on.
    /// </param>
    public LlamaCppOracle(string ggufPath, int threads = 1, int contextSize = 0, int batchSize = 512, GGMLType kvCache = GGMLType.GGML_TYPE_F32)
    {
        ArgumentException.ThrowIfNullOrEmpty(ggufPath);
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        if (!File.Exists(ggufPath))
            throw new FileNotFoundException($"GGUF file not found: {ggufPath}", ggufPath);
        EnsureNativeLibrary();

        ModelParams parameters = Parameters(ggufPath, threads, contextSize, batchSize);
        if (kvCache != GGMLType.GGML_TYPE_F32)
        {
            parameters.TypeK = kvCache;
            parameters.TypeV = kvCache;
            parameters.FlashAttention = kvCache is not GGMLType.GGML_TYPE_F16; // needed by a quantized V cache
        }
        try
        {
            _weights = LLamaWeights.LoadFromFile(parameters);
        }
        catch (Exception e)
        {
            throw new InvalidOperationException($"llama.cpp could not load {ggufPath}: {e.Message}{LogTail()}", e);
        }
        if (kvCache is not (GGMLType.GGML_TYPE_F32 or GGMLType.GGML_TYPE_F16) && HeadSize(_weights) % 32 != 0)
        {
            // llama.cpp declines such a context, and LLamaSharp 0.30.0 then crashes the process instead of throwing.
            int headSize = HeadSize(_weights);
            _weights.Dispose();
            throw new ArgumentException($"refuses a {kvCache} KV cache for heads of {headSize} values (its 32-value blocks must tile a head)");
        }
        try
        {
            _context = _weights.CreateContext(parameters);
        }
        catch (Exception e)
        {
            _weights.Dispose();
            throw new InvalidOperationException($"llama.cpp could not create a context for {ggufPath}: {e.Message}{LogTail()}", e);
        }
        _vocabSize = _weights.Vocab.Count;
        Path = ggufPath;
        BatchSize = batchSize;
    }

    /// <summary>The GGUF file.</summary>
    public string Path { get; }

    /// <summary>Values per attention head: the file's key length, else the embedding length over the heads.</summary>
    private static int HeadSize(LLamaWeights weights)
    {
        string architecture = weights.Metadata["general.architecture"];
        if (weights.Metadata.TryGetValue($"{architecture}.attention.key_length", out string? keyLength))
            return int.Parse(keyLength, System.Globalization.CultureInfo.InvariantCulture);
        return weights.EmbeddingSize / int.Parse(weights.Metadata[$"{architecture}.attention.head_count"], System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// The settings every llama.cpp context of this project uses (the oracle's and <see cref="LlamaCppBatchedDecoder"/>'s):
    /// flash attention off, F32 K and V caches, no GPU layers, <paramref name="threads"/> for single tokens and for batches,
    /// n_batch = n_ubatch = <paramref name="batchSize"/>, one sequence unless the caller sets <see cref="ModelParams.SeqMax"/>.
    /// </summary>
    internal static ModelParams Parameters(string ggufPath, int threads, int contextSize, int batchSize) => new(ggufPath)
    {
        ContextSize = contextSize > 0 ? (uint)contextSize : null,
        BatchSize = (uint)batchSize,
        UBatchSize = (uint)batchSize,
        Threads = threads,
        BatchThreads = threads,
        GpuLayerCount = 0,
        FlashAttention = false,               // LLAMA_FLASH_ATTENTION_TYPE_DISABLED
        TypeK = GGMLType.GGML_TYPE_F32,       // exact K cache (the default is F16)
        TypeV = GGMLType.GGML_TYPE_F32,       // exact V cache
    };

    /// <summary>llama.cpp's last log lines, for error messages of this assembly's other types.</summary>
    internal static string RecentLogTail() => LogTail();

    /// <summary>Threads llama.cpp uses for single tokens and for batches (llama_set_n_threads).</summary>
    public int Threads
    {
        get => _context.GenerationThreads;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 1);
            ObjectDisposedException.ThrowIf(_disposed, this);
            _context.GenerationThreads = value;
            _context.BatchThreads = value;
        }
    }

    /// <summary>The most tokens one <see cref="Evaluate"/> call takes.</summary>
    public int BatchSize { get; }

    /// <summary>Tokens in the vocabulary (the length of a logits row).</summary>
    public int VocabSize => _vocabSize;

    /// <summary>Positions of the KV cache.</summary>
    public int ContextSize => (int)_context.ContextSize;

    /// <summary>The position the next token is evaluated at.</summary>
    public int Position { get; private set; }

    /// <summary>The full path of the native libllama that was loaded (known once a model was loaded).</summary>
    public static string? NativeLibraryPath
    {
        get
        {
            lock (Gate)
                return _libraryPath;
        }
    }

    /// <summary>
    /// Quantizes the GGUF file <paramref name="source"/> (F32 or F16) into <paramref name="destination"/> with llama.cpp's own
    /// quantizer, exactly as <c>llama-quantize source destination FTYPE</c> does: per-tensor mixes and fallbacks included.
    /// </summary>
    /// <param name="source">The F32 or F16 GGUF file.</param>
    /// <param name="destination">Where the quantized file is written.</param>
    /// <param name="ftype">llama.cpp's name of the quantization, as llama-quantize takes it: Q4_K_M, Q4_K_S, Q5_K_M, Q5_K_S, Q6_K, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1.</param>
    /// <param name="threads">Quantizing threads (0: one per core).</param>
    /// <exception cref="ArgumentException">Unknown <paramref name="ftype"/>.</exception>
    /// <exception cref="InvalidOperationException">llama.cpp reports a failure.</exception>
    /// <exception cref="LlamaCppUnavailableException">The library cannot be loaded on this machine.</exception>
    public static void Quantize(string source, string destination, string ftype, int threads = 0)
    {
        LLamaFtype type = ftype switch
        {
            "Q4_K_M" => LLamaFtype.MOSTLY_Q4_K_M,
            "Q4_K_S" => LLamaFtype.MOSTLY_Q4_K_S,
            "Q5_K_M" => LLamaFtype.MOSTLY_Q5_K_M,
            "Q5_K_S" => LLamaFtype.MOSTLY_Q5_K_S,
            "Q6_K" => LLamaFtype.MOSTLY_Q6_K,
            "Q8_0" => LLamaFtype.MOSTLY_Q8_0,
            "Q4_0" => LLamaFtype.MOSTLY_Q4_0,
            "Q4_1" => LLamaFtype.MOSTLY_Q4_1,
            "Q5_0" => LLamaFtype.MOSTLY_Q5_0,
            "Q5_1" => LLamaFtype.MOSTLY_Q5_1,
            _ => throw new ArgumentException($"unknown llama.cpp quantization '{ftype}'", nameof(ftype)),
        };
        EnsureNativeLibrary();
        if (!LLamaQuantizer.Quantize(source, destination, type, threads <= 0 ? Environment.ProcessorCount : threads, allowRequantize: false, quantizeOutputTensor: true))
            throw new InvalidOperationException($"llama.cpp could not quantize {source} to {ftype}{LogTail()}");
    }

    /// <summary>
    /// Loads llama.cpp's native library once per process (LLamaSharp picks the build for the CPU's AVX level).
    /// </summary>
    /// <exception cref="LlamaCppUnavailableException">The library cannot be loaded on this machine.</exception>
    public static void EnsureNativeLibrary()
    {
        lock (Gate)
        {
            if (_loaded)
                return;
            if (_failure is not null)
                throw new LlamaCppUnavailableException(_failure);
            try
            {
                if (!NativeLibraryConfig.LLama.LibraryHasLoaded)
                    NativeLibraryConfig.All.WithLogCallback(OnLog);
                // Any native call runs NativeApi's static constructor, which selects and loads the library.
                _ = NativeApi.llama_max_devices();
                if (!NativeLibraryConfig.LLama.LibraryHasLoaded)
                    throw new InvalidOperationException("LLamaSharp reports that no native library was loaded");
                _loaded = true;
            }
            catch (Exception e)
            {
                Exception root = e;
                while (root is TypeInitializationException { InnerException: not null })
                    root = root.InnerException!;
                _failure = "llama.cpp (NuGet LLamaSharp.Backend.Cpu 0.30.0) cannot be loaded on this machine, so the llama.cpp oracle cannot run: "
                    + $"{root.GetType().Name}: {root.Message}{LogTail()}";
                throw new LlamaCppUnavailableException(_failure, e);
            }
        }
    }

    /// <summary>Forgets the KV cache: the next token is evaluated at position 0.</summary>
    public void Reset()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _context.NativeHandle.MemoryClear(data: true);
        Position = 0;
        _lastBatchCount = 0;
    }

    /// <summary>
    /// Forgets the positions from <paramref name="position"/> on (llama_memory_seq_rm): the positions before it stay in the KV
    /// cache and the next token is evaluated at <paramref name="position"/>.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="position"/> is negative or beyond <see cref="Position"/>.</exception>
    public void Rewind(int position)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentOutOfRangeException.ThrowIfNegative(position);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(position, Position);
        _context.NativeHandle.MemorySequenceRemove((LLamaSeqId)0, (LLamaPos)position, (LLamaPos)(-1)); // an end of -1: to the last position
        Position = position;
        _lastBatchCount = 0;
    }

    /// <summary>
    /// Evaluates <paramref name="tokens"/> at <see cref="Position"/> in one llama_decode call, requesting logits for
    /// the last token only (or for every token with <paramref name="allLogits"/>). Read them with <see cref="Logits(int)"/>.
    /// </summary>
    public void Evaluate(ReadOnlySpan<int> tokens, bool allLogits = false)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (tokens.IsEmpty)
            throw new ArgumentException("no tokens to evaluate", nameof(tokens));
        if (tokens.Length > BatchSize)
            throw new ArgumentException($"{tokens.Length} tokens exceed the batch size {BatchSize}", nameof(tokens));
        if (Position + tokens.Length > ContextSize)
            throw new InvalidOperationException($"{tokens.Length} tokens at position {Position} exceed the context of {ContextSize}");

        _batch.Clear();
        for (int i = 0; i < tokens.Length; i++)
            _batch.Add((LLamaToken)tokens[i], (LLamaPos)(Position + i), (LLamaSeqId)0, allLogits || i == tokens.Length - 1);
        DecodeResult result = _context.NativeHandle.Decode(_batch);
        if (result != DecodeResult.Ok)
            throw new InvalidOperationException($"llama_decode failed with {result} at position {Position} ({tokens.Length} tokens){LogTail()}");
        Position += tokens.Length;
        _lastBatchCount = tokens.Length;
    }

    /// <summary>
    /// The logits of token <paramref name="index"/> of the last <see cref="Evaluate"/> batch (default: the last token;
    /// other tokens only if it ran with allLogits). Valid until the next evaluation.
    /// </summary>
    public ReadOnlySpan<float> Logits(int index = -1)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_lastBatchCount == 0)
            throw new InvalidOperationException("nothing was evaluated since the last reset");
        int i = index < 0 ? _lastBatchCount - 1 : index;
        if (i >= _lastBatchCount)
            throw new ArgumentOutOfRangeException(nameof(index), index, $"the last batch had {_lastBatchCount} tokens");
        return _context.NativeHandle.GetLogitsIth(i)[.._vocabSize];
    }

    /// <summary>Evaluates one token and returns a copy of its logits.</summary>
    public float[] Forward(int token)
    {
        Evaluate([token]);
        return Logits().ToArray();
    }

    /// <summary>Evaluates <paramref name="tokens"/> as one batch and returns a copy of the last token's logits.</summary>
    public float[] Forward(ReadOnlySpan<int> tokens)
    {
        Evaluate(tokens);
        return Logits().ToArray();
    }

    /// <summary>
    /// Greedy decoding from an empty cache: feeds <paramref name="first"/>, then the argmax of each step's
    /// logits, for <paramref name="steps"/> steps. Returns the fed tokens and each step's logits.
    /// </summary>
    public (int[] Tokens, float[][] Logits) Greedy(int first, int steps)
    {
        Reset();
        var tokens = new int[steps];
        var logits = new float[steps][];
        int token = first;
        for (int step = 0; step < steps; step++)
        {
            tokens[step] = token;
            logits[step] = Forward(token);
            token = ArgMax(logits[step]);
        }
        return (tokens, logits);
    }

    /// <summary>Evaluates <paramref name="tokens"/> one at a time from an empty cache; returns each step's logits.</summary>
    public float[][] TeacherForced(ReadOnlySpan<int> tokens)
    {
        Reset();
        var logits = new float[tokens.Length][];
        for (int step = 0; step < tokens.Length; step++)
            logits[step] = Forward(tokens[step]);
        return logits;
    }

    /// <summary>Index of the largest value (the first one on ties, as llama.cpp's greedy sampler).</summary>
    public static int ArgMax(ReadOnlySpan<float> values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++)
        {
            if (values[i] > values[best])
                best = i;
        }
        return best;
    }

    /// <summary>
    /// llama.cpp's tokenization of <paramref name="text"/> (<c>llama_tokenize</c>): with <paramref name="addSpecial"/>, BOS as
    /// the vocabulary's <c>add_bos_token</c> says; with <paramref name="parseSpecial"/>, text spelling a control or
    /// user-defined token becomes that token.
    /// </summary>
    public int[] Tokenize(string text, bool addSpecial, bool parseSpecial)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        LLamaToken[] tokens = _weights.Tokenize(text, addSpecial, parseSpecial, Encoding.UTF8);
        var ids = new int[tokens.Length];
        for (int i = 0; i < ids.Length; i++)
            ids[i] = (int)tokens[i];
        return ids;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        _context.Dispose();
        _weights.Dispose();
    }

    private static void OnLog(LLamaLogLevel level, string message)
    {
        lock (Gate)
        {
            const string Loaded = "Successfully loaded '";
            int at = message.IndexOf(Loaded, StringComparison.Ordinal);
            if (at >= 0 && message.Contains("libllama", StringComparison.Ordinal))
                _libraryPath = message[(at + Loaded.Length)..].TrimEnd('\n', '\'');
            if (string.IsNullOrWhiteSpace(message) || message.Trim() == ".")
                return;
            RecentLog.Enqueue($"[{level}] {message.TrimEnd()}");
            while (RecentLog.Count > 40)
                RecentLog.Dequeue();
        }
    }

    /// <summary>The last lines llama.cpp and LLamaSharp logged, for error messages.</summary>
    private static string LogTail()
    {
        lock (Gate)
        {
            if (RecentLog.Count == 0)
                return "";
            var text = new StringBuilder("\nllama.cpp log (last lines):");
            foreach (string line in RecentLog)
                text.Append("\n  ").Append(line);
            return text.ToString();
        }
    }
}

/// <summary>llama.cpp's native library cannot be loaded on this machine.</summary>
[SuppressMessage("Design", "CA1032:Implement standard exception constructors", Justification = "always made with a message")]
public sealed class LlamaCppUnavailableException : Exception
{
    /// <summary>Creates the exception.</summary>
    public LlamaCppUnavailableException(string message, Exception? inner = null)
        : base(message, inner)
    {
    }
}
