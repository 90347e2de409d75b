using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.ML.Tokenizers;

namespace Llama.Compiled;

/// <summary>
/// Generates text from a prompt with one session: the prompt in, the continuation streamed out
/// chunk by chunk as it is generated.
/// </summary>
/// <example>
/// <code>
/// var generator = new TextGenerator(session, tokenizer);
/// Console.Write(prompt);
/// await foreach (string chunk in generator.GenerateAsync(prompt, new GenerationOptions { MaxNewTokens = 100 }, cancellationToken))
///     Console.Write(chunk);
/// Console.WriteLine($" ({generator.LastStats!.DecodeTokensPerSecond:F0} tok/s)");
/// </code>
/// </example>
/// <remarks>
/// A generator is not thread-safe: one generation at a time. The forward passes run synchronously on
/// the thread that enumerates (also for the asynchronous methods, which never block on I/O).
/// </remarks>
public sealed class TextGenerator
{
    // The ids in the session's KV cache, in order, when _sessionKnown; what the next generation may reuse.
    private readonly List<int> _sessionTokens = [];
    private bool _sessionKnown;

    /// <summary>Creates a generator that runs <paramref name="session"/> and reads and writes text with <paramref name="tokenizer"/>.</summary>
    public TextGenerator(ILlamaSession session, Tokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(session);
        ArgumentNullException.ThrowIfNull(tokenizer);
        Session = session;
        Tokenizer = tokenizer;
    }

    /// <summary>
    /// The session generation runs in. Each generation resets it, unless <see cref="ReuseSessionPrefix"/>
    /// lets it keep what the previous one left in the KV cache.
    /// </summary>
    public ILlamaSession Session { get; }

    /// <summary>The model's tokenizer.</summary>
    public Tokenizer Tokenizer { get; }

    /// <summary>
    /// When true, a generation whose prompt ids start with all the ids already in the session's KV cache
    /// (the previous prompt and the tokens generated after it) evaluates only the rest of the prompt
    /// instead of resetting the session and evaluating all of it: a chat's next turn costs only the new
    /// text. Any other prompt resets the session. Default false (every generation starts afresh). The
    /// generator tracks what it evaluated itself: do not run the session directly between generations
    /// (a changed <see cref="ILlamaSession.Position"/> is noticed and resets it, other changes are not).
    /// </summary>
    public bool ReuseSessionPrefix { get; set; }

    /// <summary>
    /// The token ids in the session's KV cache after the latest generation (prompt and evaluated
    /// generated tokens), or empty when unknown (before the first generation, after an error).
    /// </summary>
    public IReadOnlyList<int> SessionTokens => _sessionKnown ? _sessionTokens : [];

    /// <summary>
    /// Counts and timings of the latest generation, set when its enumeration ends (also when the
    /// caller stops early, on cancellation or an error); <see langword="null"/> before that.
    /// </summary>
    public GenerationStats? LastStats { get; private set; }

    /// <summary>
    /// The text, counts and timings of the latest generation, set with <see cref="LastStats"/>.
    /// </summary>
    public GenerationResult? LastResult { get; private set; }

    /// <summary>
    /// Generates the continuation of <paramref name="prompt"/> and streams it. Enumerating resets the
    /// session, evaluates the prompt (BOS first) in one batch, then samples token after token until
    /// an end-of-sequence token or BOS, a stop token or stop sequence, <see cref="GenerationOptions.MaxNewTokens"/>,
    /// or a full context. The prompt itself is not part of the output: the caller has it as typed, and
    /// the chunks continue it (the first chunk keeps its leading space unless the prompt is empty).
    /// </summary>
    /// <exception cref="ArgumentException">The prompt does not fit in the context.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range.</exception>
    public IEnumerable<string> Generate(string prompt, GenerationOptions? options = null) =>
        Generate(prompt, options, CancellationToken.None);

    /// <summary>
    /// <see cref="Generate(string, GenerationOptions?)"/> with a cancellation token, checked before the
    /// prefill and between tokens: cancelling stops generation (<see cref="StopReason.Cancelled"/>) and
    /// the enumeration throws <see cref="OperationCanceledException"/>.
    /// </summary>
    public IEnumerable<string> Generate(string prompt, GenerationOptions? options, CancellationToken cancellationToken)
    {
        // Arguments are checked here, when called, rather than on the first MoveNext of the iterator.
        var run = Prepare(EncodePrompt(prompt), options);
        return Run(run, cancellationToken);
    }

    /// <summary>
    /// Generates the continuation of a prompt given as token ids, used as they are (add BOS yourself,
    /// or use <see cref="EncodePrompt"/>); otherwise as <see cref="Generate(string, GenerationOptions?, CancellationToken)"/>.
    /// The first chunk loses its leading space only when the prompt ends with BOS.
    /// </summary>
    /// <exception cref="ArgumentException">The prompt is empty, has an id outside the vocabulary, or does not fit in the context.</exception>
    public IEnumerable<string> Generate(IReadOnlyList<int> promptIds, GenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        var run = Prepare(CheckIds(promptIds), options);
        return Run(run, cancellationToken);
    }

    /// <summary>
    /// Streams the continuation of <paramref name="prompt"/> as <see cref="Generate(string, GenerationOptions?, CancellationToken)"/>
    /// does, as an asynchronous sequence. Cancelling <paramref name="cancellationToken"/> (or the token
    /// given to <c>WithCancellation</c>) stops generation between two tokens with an
    /// <see cref="OperationCanceledException"/>.
    /// </summary>
    public IAsyncEnumerable<string> GenerateAsync(string prompt, GenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        var run = Prepare(EncodePrompt(prompt), options);
        return new SyncAsyncEnumerable<string>(token => Run(run, token), cancellationToken);
    }

    /// <summary>The asynchronous form of <see cref="Generate(IReadOnlyList{int}, GenerationOptions?, CancellationToken)"/>.</summary>
    public IAsyncEnumerable<string> GenerateAsync(IReadOnlyList<int> promptIds, GenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        var run = Prepare(CheckIds(promptIds), options);
        return new SyncAsyncEnumerable<string>(token => Run(run, token), cancellationToken);
    }

    /// <summary>Generates the whole continuation of <paramref name="prompt"/> and returns it with its counts.</summary>
    public GenerationResult GenerateText(string prompt, GenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        foreach (string _ in Generate(prompt, options, cancellationToken))
        {
        }
        return LastResult!;
    }

    /// <summary>Generates the whole continuation of <paramref name="prompt"/> and returns it with its counts.</summary>
    public async Task<GenerationResult> GenerateTextAsync(string prompt, GenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        await foreach (string _ in GenerateAsync(prompt, options, cancellationToken).ConfigureAwait(false))
        {
        }
        return LastResult!;
    }

    /// <summary>
    /// The ids <see cref="Generate(string, GenerationOptions?)"/> evaluates for <paramref name="prompt"/>:
    /// the tokenizer's ids with BOS first (added when the tokenizer does not add it), except for a byte-level BPE
    /// tokenizer that adds no BOS (Qwen), whose ids are used as they are (BOS only for an empty prompt).
    /// </summary>
    public int[] EncodePrompt(string prompt) => EncodePromptIds(Tokenizer, Session.Model.Shape.BosTokenId, prompt);

    /// <summary><see cref="EncodePrompt(string)"/> for a tokenizer and a model's BOS id.</summary>
    internal static int[] EncodePromptIds(Tokenizer tokenizer, int bosTokenId, string prompt)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        IReadOnlyList<int> ids = tokenizer.EncodeToIds(prompt);
        // A byte-level tokenizer that adds no BOS (Qwen) is followed as it is: the model was trained without one.
        // Only an empty prompt gets the model's BOS, as something must be evaluated first.
        if (tokenizer is ByteLevelBpeTokenizer { AddBeginningOfSentence: false } && ids.Count > 0)
            return [.. ids];
        // SentencePiece encodes "" to nothing at all, and a tokenizer may be set not to add BOS.
        bool hasBos = ids.Count > 0 && ids[0] == bosTokenId;
        int[] result = new int[ids.Count + (hasBos ? 0 : 1)];
        result[0] = bosTokenId;
        for (int i = 0; i < ids.Count; i++)
            result[result.Length - ids.Count + i] = ids[i];
        return result;
    }

    private int[] CheckIds(IReadOnlyList<int> promptIds) => CheckIds(promptIds, Session.Model.Shape.VocabSize);

    /// <summary>A copy of <paramref name="promptIds"/>, checked: not empty, every id in the vocabulary.</summary>
    internal static int[] CheckIds(IReadOnlyList<int> promptIds, int vocabSize)
    {
        ArgumentNullException.ThrowIfNull(promptIds);
        if (promptIds.Count == 0)
            throw new ArgumentException("The prompt has no tokens; start it with BOS.", nameof(promptIds));
        int[] ids = new int[promptIds.Count];
        for (int i = 0; i < ids.Length; i++)
        {
            int id = promptIds[i];
            if ((uint)id >= (uint)vocabSize)
                throw new ArgumentException($"Token id {id} at index {i} is outside the vocabulary of {vocabSize}.", nameof(promptIds));
            ids[i] = id;
        }
        return ids;
    }

    /// <summary>Everything a generation needs, checked before it starts.</summary>
    internal sealed record RunSetup(int[] PromptIds, GenerationOptions Options, Sampler Sampler);

    private RunSetup Prepare(int[] promptIds, GenerationOptions? options) => Prepare(promptIds, options, Session.Model.Shape);

    /// <summary>Checks the options and that the prompt fits in the context, and makes the sampler.</summary>
    internal static RunSetup Prepare(int[] promptIds, GenerationOptions? options, LlamaModelShape shape)
    {
        options ??= new GenerationOptions();
        if (options.MaxNewTokens < 0)
            throw new ArgumentOutOfRangeException(nameof(options.MaxNewTokens), options.MaxNewTokens, "MaxNewTokens must be >= 0.");
        ArgumentNullException.ThrowIfNull(options.StopSequences, nameof(options.StopSequences));
        ArgumentNullException.ThrowIfNull(options.StopTokenIds, nameof(options.StopTokenIds));
        if (promptIds.Length > shape.MaxContext)
            throw new ArgumentException($"The prompt is {promptIds.Length} tokens; the context holds {shape.MaxContext}.", "prompt");
        return new RunSetup(promptIds, options, new Sampler(shape.VocabSize, options.Sampling));
    }

    /// <summary>How many ids at the start of the prompt are already in the KV cache and can be kept.</summary>
    private int ReusablePrefix(int[] promptIds)
    {
        if (!ReuseSessionPrefix || !_sessionKnown || _sessionTokens.Count == 0)
            return 0;
        // At least one prompt id must be evaluated: its logits choose the first token.
        if (_sessionTokens.Count >= promptIds.Length || Session.Position != _sessionTokens.Count)
            return 0;
        return promptIds.AsSpan(0, _sessionTokens.Count).SequenceEqual(CollectionsMarshal.AsSpan(_sessionTokens))
            ? _sessionTokens.Count
            : 0;
    }

    private IEnumerable<string> Run(RunSetup setup, CancellationToken cancellationToken)
    {
        int[] promptIds = setup.PromptIds;
        LlamaModelShape shape = Session.Model.Shape;
        var generation = new TokenGeneration(Tokenizer, shape, promptIds, setup.Options, setup.Sampler);
        int reused = 0;
        long prefillTicks = 0, decodeTicks = 0;
        StopReason reason = StopReason.Abandoned;
        try
        {
            cancellationToken.ThrowIfCancellationRequested();
            long started = Stopwatch.GetTimestamp();
            reused = ReusablePrefix(promptIds);
            if (reused == 0)
            {
                _sessionKnown = false;
                Session.Reset();
                _sessionTokens.Clear();
                _sessionKnown = true;
            }
            ReadOnlySpan<int> prefill = promptIds.AsSpan(reused);
            if (setup.Options.MaxNewTokens == 0)
            {
                Feed(prefill);
                prefillTicks = Stopwatch.GetTimestamp() - started;
                reason = StopReason.MaxNewTokens;
                yield break;
            }
            // Time to the first token: the prompt's forward pass and the first draw.
            string chunk = Step(generation, Feed(prefill));
            long resumed = Stopwatch.GetTimestamp();
            prefillTicks = resumed - started;

            while (true)
            {
                if (chunk.Length > 0)
                {
                    // The caller's time between chunks is not generation time.
                    decodeTicks += Stopwatch.GetTimestamp() - resumed;
                    yield return chunk;
                    resumed = Stopwatch.GetTimestamp();
                }
                if (generation.StopReason is not null)
                    break;
                if (cancellationToken.IsCancellationRequested)
                {
                    reason = StopReason.Cancelled;
                    decodeTicks += Stopwatch.GetTimestamp() - resumed;
                    cancellationToken.ThrowIfCancellationRequested();
                }
                chunk = Step(generation, Feed(generation.NextToken));
            }

            string rest = generation.Finish();
            reason = generation.StopReason.Value;
            decodeTicks += Stopwatch.GetTimestamp() - resumed;
            if (rest.Length > 0)
                yield return rest;
        }
        finally
        {
            if (reason == StopReason.Abandoned && cancellationToken.IsCancellationRequested)
                reason = StopReason.Cancelled;
            var stats = new GenerationStats(
                promptIds.Length,
                generation.Generated,
                Stopwatch.GetElapsedTime(0, prefillTicks),
                Stopwatch.GetElapsedTime(0, decodeTicks),
                reason,
                generation.Seed)
            {
                ReusedPromptTokens = reused,
            };
            LastStats = stats;
            LastResult = new GenerationResult(generation.Text, stats);
        }
    }

    // The logits span cannot be a local of the iterator (it would live across a yield), so the forward pass's result goes
    // straight into the step here.
    private string Step(TokenGeneration generation, ReadOnlySpan<float> logits) =>
        generation.Step(logits, Session.Position >= Session.Model.Shape.MaxContext && Session.Options.Overflow != ContextOverflow.Shift);

    /// <summary>Evaluates <paramref name="ids"/> and records them as being in the KV cache.</summary>
    private ReadOnlySpan<float> Feed(ReadOnlySpan<int> ids)
    {
        // Should the forward pass throw, what the cache holds is unknown: the next generation resets.
        _sessionKnown = false;
        ReadOnlySpan<float> logits = Session.Forward(ids);
        _sessionTokens.AddRange(ids);
        FollowContextShift();
        _sessionKnown = true;
        return logits;
    }

    private ReadOnlySpan<float> Feed(int id)
    {
        _sessionKnown = false;
        ReadOnlySpan<float> logits = Session.Forward(id);
        _sessionTokens.Add(id);
        FollowContextShift();
        _sessionKnown = true;
        return logits;
    }

    /// <summary>
    /// A session created with <see cref="ContextOverflow.Shift"/> drops positions after its KeepTokens when it is full:
    /// drop the same ids here, so that the ids known to be in the cache stay exactly the cache's.
    /// </summary>
    private void FollowContextShift()
    {
        int dropped = _sessionTokens.Count - Session.Position;
        if (dropped > 0)
            _sessionTokens.RemoveRange(Session.Options.KeepTokens, dropped);
    }
}
