using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Runtime.InteropServices;
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
/// foreach (string chunk in generator.Generate(prompt, new GenerationOptions { MaxNewTokens = 100 }))
///     Console.Write(chunk);
/// Console.WriteLine($" ({generator.LastStats!.DecodeTokensPerSecond:F0} tok/s)");
/// </code>
/// </example>
public sealed class TextGenerator
{
    /// <summary>Creates a generator that runs <paramref name="session"/> and reads and writes text with <paramref name="tokenizer"/>.</summary>
    public TextGenerator(ILlamaSession session, Tokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(session);
        ArgumentNullException.ThrowIfNull(tokenizer);
        Session = session;
        Tokenizer = tokenizer;
    }

    /// <summary>The session generation runs in; each <see cref="Generate"/> resets it.</summary>
    public ILlamaSession Session { get; }

    /// <summary>The model's tokenizer.</summary>
    public Tokenizer Tokenizer { get; }

    /// <summary>
    /// Counts and timings of the latest generation, set when its enumeration ends (also when the
    /// caller stops early); <see langword="null"/> before that.
    /// </summary>
    public GenerationStats? LastStats { get; private set; }

    /// <summary>
    /// Generates the continuation of <paramref name="prompt"/> and streams it. Enumerating resets the
    /// session, evaluates the prompt (BOS first) in one batch, then samples token after token until
    /// an end-of-sequence token or BOS, <see cref="GenerationOptions.MaxNewTokens"/>, or a full
    /// context. The prompt itself is not part of the output: the caller has it as typed, and the
    /// chunks continue it (the first chunk keeps its leading space unless the prompt is empty).
    /// </summary>
    /// <exception cref="ArgumentException">The prompt does not fit in the context.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range.</exception>
    public IEnumerable<string> Generate(string prompt, GenerationOptions? options = null)
    {
        // Arguments are checked here, when called, rather than on the first MoveNext of the iterator.
        ArgumentNullException.ThrowIfNull(prompt);
        options ??= new GenerationOptions();
        if (options.MaxNewTokens < 0)
            throw new ArgumentOutOfRangeException(nameof(options.MaxNewTokens), options.MaxNewTokens, "MaxNewTokens must be >= 0.");
        LlamaModelShape shape = Session.Model.Shape;
        int[] promptIds = Encode(prompt, shape.BosTokenId);
        if (promptIds.Length > shape.MaxContext)
            throw new ArgumentException($"The prompt is {promptIds.Length} tokens; the context holds {shape.MaxContext}.", nameof(prompt));
        var sampler = new Sampler(shape.VocabSize, options.Sampling);
        return Run(promptIds, options.MaxNewTokens, sampler);
    }

    private int[] Encode(string prompt, int bosTokenId)
    {
        IReadOnlyList<int> ids = Tokenizer.EncodeToIds(prompt);
        // SentencePiece encodes "" to nothing at all, and a tokenizer may be set not to add BOS.
        bool hasBos = ids.Count > 0 && ids[0] == bosTokenId;
        int[] result = new int[ids.Count + (hasBos ? 0 : 1)];
        result[0] = bosTokenId;
        for (int i = 0; i < ids.Count; i++)
            result[result.Length - ids.Count + i] = ids[i];
        return result;
    }

    private IEnumerable<string> Run(int[] promptIds, int maxNewTokens, Sampler sampler)
    {
        LlamaModelShape shape = Session.Model.Shape;
        var tokens = new List<int>(promptIds.Length + Math.Min(maxNewTokens, shape.MaxContext));
        tokens.AddRange(promptIds);
        var decoder = new StreamingDecoder(Tokenizer, promptIds);
        int generated = 0;
        long prefillTicks = 0, decodeTicks = 0;
        StopReason reason = StopReason.Abandoned;
        try
        {
            long started = Stopwatch.GetTimestamp();
            Session.Reset();
            if (maxNewTokens == 0)
            {
                Session.Forward(promptIds);
                prefillTicks = Stopwatch.GetTimestamp() - started;
                reason = StopReason.MaxNewTokens;
                yield break;
            }
            // Time to the first token: the prompt's forward pass and the first draw.
            int next = SampleNext(sampler, Session.Forward(promptIds), tokens);
            long resumed = Stopwatch.GetTimestamp();
            prefillTicks = resumed - started;

            while (true)
            {
                if (next == shape.BosTokenId || Contains(shape.EosTokenIds, next))
                {
                    reason = StopReason.EndOfSequence;
                    break;
                }
                tokens.Add(next);
                generated++;
                string chunk = decoder.Append(next);
                if (chunk.Length > 0)
                {
                    // The caller's time between chunks is not generation time.
                    decodeTicks += Stopwatch.GetTimestamp() - resumed;
                    yield return chunk;
                    resumed = Stopwatch.GetTimestamp();
                }
                if (generated == maxNewTokens)
                {
                    reason = StopReason.MaxNewTokens;
                    break;
                }
                if (Session.Position >= shape.MaxContext)
                {
                    reason = StopReason.ContextFull;
                    break;
                }
                next = SampleNext(sampler, Session.Forward(next), tokens);
            }

            string rest = decoder.Flush();
            decodeTicks += Stopwatch.GetTimestamp() - resumed;
            if (rest.Length > 0)
                yield return rest;
        }
        finally
        {
            LastStats = new GenerationStats(
                promptIds.Length,
                generated,
                Stopwatch.GetElapsedTime(0, prefillTicks),
                Stopwatch.GetElapsedTime(0, decodeTicks),
                reason,
                sampler.Seed);
        }
    }

    // The logits span cannot be a local of the iterator (it would live across a yield), so the
    // forward pass's result goes straight into the sampler here.
    private static int SampleNext(Sampler sampler, ReadOnlySpan<float> logits, List<int> tokens) =>
        sampler.Sample(logits, CollectionsMarshal.AsSpan(tokens));

    private static bool Contains(IReadOnlyList<int> ids, int id)
    {
        for (int i = 0; i < ids.Count; i++)
        {
            if (ids[i] == id)
                return true;
        }
        return false;
    }
}
