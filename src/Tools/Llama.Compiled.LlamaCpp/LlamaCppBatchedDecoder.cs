using System;
using System.Collections.Generic;
using System.IO;
using LLama;
using LLama.Batched;
using LLama.Common;
using LLama.Native;

namespace Llama.Compiled.LlamaCpp;

/// <summary>
/// Several sequences decoded together by llama.cpp (LLamaSharp 0.30.0's <see cref="BatchedExecutor"/>, one
/// <see cref="Conversation"/> per sequence): each step puts one token of every sequence into one llama_decode. The context
/// has <see cref="LlamaCppOracle"/>'s settings (flash attention off, F32 K and V caches, one thread count for single
/// tokens and batches), sized by <see cref="CreateContext"/> for the sequences: n_seq_max = sequences, n_ctx = sequences ×
/// positions per sequence, a KV cache stream per sequence (kv_unified off), n_batch = n_ubatch ≥ sequences. The weights are loaded once; contexts come and go.
/// </summary>
/// <remarks>For samples/LlamaBench's --batch mode. Not thread-safe.</remarks>
public sealed class LlamaCppBatchedDecoder : IDisposable
{
    private readonly LLamaWeights _weights;
    private readonly int _vocabSize;
    private BatchedExecutor? _executor;
    private Conversation[] _conversations = [];
    private float[][]? _startLogits; // each prompt's last logits, until the first step
    private bool _disposed;

    /// <summary>Loads <paramref name="ggufPath"/>; call <see cref="CreateContext"/> before anything else.</summary>
    /// <exception cref="FileNotFoundException">No such file.</exception>
    /// <exception cref="InvalidOperationException">llama.cpp cannot load the file.</exception>
    /// <exception cref="LlamaCppUnavailableException">The native library cannot be loaded on this machine.</exception>
    public LlamaCppBatchedDecoder(string ggufPath)
    {
        ArgumentException.ThrowIfNullOrEmpty(ggufPath);
        if (!File.Exists(ggufPath))
            throw new FileNotFoundException($"GGUF file not found: {ggufPath}", ggufPath);
        LlamaCppOracle.EnsureNativeLibrary();
        Path = ggufPath;
        try
        {
            _weights = LLamaWeights.LoadFromFile(LlamaCppOracle.Parameters(ggufPath, threads: 1, contextSize: 0, batchSize: 512));
        }
        catch (Exception e)
        {
            throw new InvalidOperationException($"llama.cpp could not load {ggufPath}: {e.Message}{LlamaCppOracle.RecentLogTail()}", e);
        }
        _vocabSize = _weights.Vocab.Count;
    }

    /// <summary>The GGUF file.</summary>
    public string Path { get; }

    /// <summary>Tokens in the vocabulary (the length of a logits row).</summary>
    public int VocabSize => _vocabSize;

    /// <summary>Sequences the current context holds (0 before <see cref="CreateContext"/>).</summary>
    public int Sequences { get; private set; }

    /// <summary>Positions of the current context's KV cache, over all sequences (llama.cpp's n_ctx).</summary>
    public int ContextSize => _executor is null ? 0 : (int)_executor.Context.ContextSize;

    /// <summary>Tokens one llama_decode takes at most in the current context (n_batch = n_ubatch).</summary>
    public int BatchSize => _executor is null ? 0 : (int)_executor.Context.BatchSize;

    /// <summary>
    /// Replaces the context with one for <paramref name="sequences"/> sequences of up to <paramref name="positionsPerSequence"/>
    /// positions each, evaluated with <paramref name="threads"/> threads.
    /// </summary>
    /// <exception cref="InvalidOperationException">llama.cpp cannot create the context.</exception>
    public void CreateContext(int sequences, int positionsPerSequence, int threads)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentOutOfRangeException.ThrowIfLessThan(sequences, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(positionsPerSequence, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        ReleaseContext();
        // A prompt goes into one batch (BatchedExecutor's rule), and a step's tokens, one per sequence, into one ubatch.
        ModelParams parameters = LlamaCppOracle.Parameters(Path, threads, checked(sequences * positionsPerSequence), Math.Max(sequences, positionsPerSequence));
        parameters.SeqMax = (uint)sequences;
        // A KV cache stream per sequence: each token attends over its own sequence's cells only. LLamaSharp's default (a
        // unified cache) makes every token's attention span all sequences' cells, masked; llama.cpp advises against it for
        // sequences without a shared prefix (https://github.com/ggml-org/llama.cpp/pull/14363).
        parameters.KVUnified = false;
        try
        {
            _executor = new BatchedExecutor(_weights, parameters);
        }
        catch (Exception e)
        {
            throw new InvalidOperationException($"llama.cpp could not create a context of {sequences} sequences × {positionsPerSequence} positions for {Path}: "
                + $"{e.Message}{LlamaCppOracle.RecentLogTail()}", e);
        }
        Sequences = sequences;
    }

    /// <summary>
    /// Ends the sequences of the last <see cref="Start"/> (their KV cache entries are removed) and starts one per prompt,
    /// each at position 0: every prompt is evaluated, one llama_decode per prompt; afterwards <see cref="Logits"/> of each
    /// sequence are those of its prompt's last token.
    /// </summary>
    /// <remarks>
    /// One prompt per llama_decode because a <see cref="Conversation"/> can be sampled only right after the Infer that
    /// evaluated it: prompts that spill into a second batch would leave the first batch's conversations unsampleable. The
    /// prompts' last logits are copied, so they stay readable until the next <see cref="Step(ReadOnlySpan{int})"/>.
    /// </remarks>
    /// <exception cref="ArgumentException">More prompts than the context's sequences, an empty prompt, or one longer than <see cref="BatchSize"/>.</exception>
    /// <exception cref="InvalidOperationException">A llama_decode failed.</exception>
    public void Start(IReadOnlyList<int[]> prompts)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        BatchedExecutor executor = Executor();
        if (prompts.Count > Sequences)
            throw new ArgumentException($"{prompts.Count} prompts exceed the context's {Sequences} sequences", nameof(prompts));
        EndConversations();
        _conversations = new Conversation[prompts.Count];
        _startLogits = new float[prompts.Count][];
        for (int i = 0; i < prompts.Count; i++)
        {
            if (prompts[i].Length == 0 || prompts[i].Length > BatchSize)
                throw new ArgumentException($"prompt {i} has {prompts[i].Length} tokens; 1 to {BatchSize} fit", nameof(prompts));
            _conversations[i] = executor.Create();
            var tokens = new LLamaToken[prompts[i].Length];
            for (int j = 0; j < tokens.Length; j++)
                tokens[j] = prompts[i][j];
            _conversations[i].Prompt(tokens);
            Infer(executor);
            _startLogits[i] = _conversations[i].Sample()[.._vocabSize].ToArray();
        }
    }

    /// <summary>
    /// One decode step of every started sequence: <paramref name="tokens"/>[i] at sequence i's next position, all in one
    /// llama_decode.
    /// </summary>
    /// <exception cref="ArgumentException">Not one token per started sequence.</exception>
    /// <exception cref="InvalidOperationException">The llama_decode failed.</exception>
    public void Step(ReadOnlySpan<int> tokens)
    {
        BatchedExecutor executor = Executor();
        if (tokens.Length != _conversations.Length)
            throw new ArgumentException($"{tokens.Length} tokens for {_conversations.Length} sequences", nameof(tokens));
        _startLogits = null;
        for (int i = 0; i < tokens.Length; i++)
            _conversations[i].Prompt((LLamaToken)tokens[i]);
        Infer(executor);
        if (executor.BatchedTokenCount != 0)
            throw new InvalidOperationException($"a step of {tokens.Length} tokens did not fit in one llama_decode (n_batch {BatchSize})");
    }

    /// <summary>The logits of sequence <paramref name="sequence"/>'s last evaluated token; valid until the next evaluation.</summary>
    public ReadOnlySpan<float> Logits(int sequence)
    {
        _ = Executor();
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)sequence, (uint)_conversations.Length, nameof(sequence));
        return _startLogits is not null ? _startLogits[sequence] : _conversations[sequence].Sample()[.._vocabSize];
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        ReleaseContext();
        _weights.Dispose();
    }

    private BatchedExecutor Executor()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _executor ?? throw new InvalidOperationException("no context: call CreateContext first");
    }

    /// <summary>Runs the executor's next queued batch; BatchedExecutor.Infer decodes on a thread-pool thread, awaited here.</summary>
    private void Infer(BatchedExecutor executor)
    {
        DecodeResult result = executor.Infer().GetAwaiter().GetResult();
        if (result != DecodeResult.Ok)
            throw new InvalidOperationException($"llama_decode failed with {result} ({_conversations.Length} sequences){LlamaCppOracle.RecentLogTail()}");
    }

    private void EndConversations()
    {
        _startLogits = null;
        foreach (Conversation conversation in _conversations)
            conversation.Dispose();
        _conversations = [];
    }

    private void ReleaseContext()
    {
        EndConversations();
        _executor?.Dispose();
        _executor = null;
        Sequences = 0;
    }
}
