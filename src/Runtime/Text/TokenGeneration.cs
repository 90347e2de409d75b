using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.ML.Tokenizers;

namespace Llama.Compiled;

/// <summary>
/// What one generation decides after each forward pass, apart from running it: the next token (sampling over the prompt
/// and the tokens so far), whether it ends generation (an end-of-sequence or stop token, a stop sequence, the token
/// limit, a full context), and the text it adds (detokenized in a stream, cut at stop sequences). Shared by
/// <see cref="TextGenerator"/> (one session) and <see cref="BatchedGenerator"/> (many in one batch), so both stop and
/// stream alike.
/// </summary>
internal sealed class TokenGeneration
{
    private readonly LlamaModelShape _shape;
    private readonly GenerationOptions _options;
    private readonly Sampler _sampler;
    private readonly List<int> _tokens;          // the prompt, then every generated token: what the penalties look at
    private readonly StreamingDecoder _decoder;
    private readonly StopSequenceMatcher _stops;
    private readonly StringBuilder _text = new();
    private readonly GrammarMatcher? _grammar;  // the output's place in GenerationOptions.Grammar
    private readonly LazyGrammarMatcher? _lazy; // instead, when the grammar has triggers
    private float[]? _scratch;                  // logits with rejected tokens masked (lazy grammar)

    public TokenGeneration(Tokenizer tokenizer, LlamaModelShape shape, int[] promptIds, GenerationOptions options, Sampler sampler)
    {
        _shape = shape;
        _options = options;
        _sampler = sampler;
        _tokens = new List<int>(promptIds.Length + Math.Min(options.MaxNewTokens, shape.MaxContext));
        _tokens.AddRange(promptIds);
        _decoder = new StreamingDecoder(tokenizer, promptIds, exactText: options.Grammar is not null);
        _stops = new StopSequenceMatcher(options.StopSequences);
        if (options.Grammar is { } grammar)
        {
            GrammarMatcher matcher = grammar.CreateMatcher(tokenizer, [.. shape.EosTokenIds, .. options.StopTokenIds]);
            if (options.GrammarTriggers is { Count: > 0 } triggers)
                _lazy = new LazyGrammarMatcher(matcher, tokenizer, triggers);
            else
                _grammar = matcher;
        }
    }

    /// <summary>Tokens generated so far (an ending token not counted).</summary>
    public int Generated { get; private set; }

    /// <summary>The token to evaluate next, valid after a <see cref="Step"/> that did not end generation.</summary>
    public int NextToken { get; private set; }

    /// <summary>Why generation ended, once a <see cref="Step"/> ended it; null while it goes on.</summary>
    public StopReason? StopReason { get; private set; }

    /// <summary>Every chunk returned so far, concatenated.</summary>
    public string Text => _text.ToString();

    /// <summary>The sampler's seed.</summary>
    public ulong Seed => _sampler.Seed;

    /// <summary>
    /// Draws the token that follows <paramref name="logits"/> and returns the text it completes (often empty: text that may
    /// begin a stop sequence or an unfinished character is held back). When the token ends generation,
    /// <see cref="StopReason"/> is set and <see cref="Finish"/> gives what is still held back; otherwise
    /// <see cref="NextToken"/> is the token to evaluate.
    /// </summary>
    /// <param name="logits">The logits of the last evaluated token [VocabSize].</param>
    /// <param name="contextFull">True when the session has no room for another token (and does not shift).</param>
    public string Step(ReadOnlySpan<float> logits, bool contextFull)
    {
        int next = _lazy is not null ? SampleLazy(logits) : _sampler.Sample(logits, CollectionsMarshal.AsSpan(_tokens), _grammar);
        if (next == _shape.BosTokenId || Contains(_shape.EosTokenIds, next) || Contains(_options.StopTokenIds, next))
        {
            StopReason = Llama.Compiled.StopReason.EndOfSequence;
            return string.Empty;
        }
        _grammar?.Accept(next);
        _lazy?.Accept(next);
        _tokens.Add(next);
        Generated++;
        NextToken = next;
        string chunk = _stops.Push(_decoder.Append(next));
        _text.Append(chunk);
        if (_stops.Matched)
            StopReason = Llama.Compiled.StopReason.StopSequence;
        else if (_grammar is { IsFinished: true })
            StopReason = Llama.Compiled.StopReason.EndOfSequence; // the grammar is complete and nothing can follow
        else if (Generated == _options.MaxNewTokens)
            StopReason = Llama.Compiled.StopReason.MaxNewTokens;
        else if (contextFull)
            StopReason = Llama.Compiled.StopReason.ContextFull;
        return chunk;
    }

    /// <summary>
    /// After generation ended: the text still held back (an incomplete character, the start of a stop sequence that did
    /// not come), unless it completes a stop sequence, which then becomes the <see cref="StopReason"/>.
    /// </summary>
    public string Finish()
    {
        if (_stops.Matched)
            return string.Empty;
        string rest = _stops.Push(_decoder.Flush());
        if (_stops.Matched)
            StopReason = Llama.Compiled.StopReason.StopSequence;
        else
            rest += _stops.Flush();
        _text.Append(rest);
        return rest;
    }

    /// <summary>
    /// Samples under a lazy grammar: the token drawn is kept when allowed (in free text almost every token is); otherwise,
    /// inside the grammar, the logits are masked, and any token still rejected (one that would start the grammar with text
    /// it does not allow) is removed, until one is allowed.
    /// </summary>
    private int SampleLazy(ReadOnlySpan<float> logits)
    {
        ReadOnlySpan<int> recent = CollectionsMarshal.AsSpan(_tokens);
        int token = _sampler.Sample(logits, recent);
        if (_lazy!.IsAllowed(token))
            return token;
        float[] scratch = _scratch ??= new float[logits.Length];
        logits.CopyTo(scratch);
        int allowed = _lazy.ApplyMask(scratch);
        while (true)
        {
            if (!float.IsNegativeInfinity(scratch[token]))
            {
                scratch[token] = float.NegativeInfinity;
                allowed--;
            }
            if (allowed <= 0)
                throw new InvalidOperationException("The grammar allows no token here (and the output is not complete).");
            token = _sampler.Sample(scratch, recent);
            if (_lazy.IsAllowed(token))
                return token;
        }
    }

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
