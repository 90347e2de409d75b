using System;
using System.Collections.Generic;
using System.Numerics;
using System.Runtime.CompilerServices;
using Llama.Compiled.Grammars;

namespace Llama.Compiled;

/// <summary>
/// Where one output stands in a <see cref="Grammar"/>: which tokens may come next, and the state after each accepted
/// token. Made by <see cref="Grammar.CreateMatcher"/>, one per generation; not thread-safe (the grammar it comes from is).
/// </summary>
/// <remarks>
/// <see cref="Sampler.Sample(ReadOnlySpan{float}, ReadOnlySpan{int}, GrammarMatcher?)"/> uses it the cheap way: it
/// samples as usual, checks the one token drawn (a walk over its bytes), and only when the grammar rejects it masks the
/// logits (<see cref="ApplyMask(Span{float})"/>) and draws again — which draws from exactly the masked distribution when no top-k/top-p
/// filter is set. Masks are cached per grammar state and shared between generations.
/// </remarks>
public sealed class GrammarMatcher
{
    private readonly GrammarEngine _engine;
    private readonly int[] _endTokens;
    private int _state;
    private bool _ended;

    internal GrammarMatcher(Grammar grammar, GrammarEngine engine, IEnumerable<int>? endTokenIds)
    {
        Grammar = grammar;
        _engine = engine;
        var ends = new List<int>();
        if (endTokenIds is not null)
        {
            foreach (int id in endTokenIds)
            {
                if (id >= 0 && !ends.Contains(id))
                    ends.Add(id);
            }
        }
        _endTokens = [.. ends];
        _state = engine.InitialState;
    }

    /// <summary>The grammar matched.</summary>
    public Grammar Grammar { get; }

    internal GrammarEngine Engine => _engine;

    /// <summary>The engine's state of the text so far (the end token not included).</summary>
    internal int State
    {
        get => _state;
        set => _state = value;
    }

    /// <summary>Whether the text so far is a complete string of the language (an end token is allowed).</summary>
    public bool CanEnd => !_ended && _engine.CanEnd(_state);

    /// <summary>
    /// Whether nothing more can be accepted: an end token was accepted, or the text is complete and no byte could
    /// continue it (a JSON value closed). Generation stops here.
    /// </summary>
    public bool IsFinished => _ended || _engine.IsFinished(_state);

    /// <summary>Whether <paramref name="tokenId"/> may come next.</summary>
    public bool IsAllowed(int tokenId)
    {
        if (_ended)
            return false;
        if (IsEndToken(tokenId))
            return _engine.CanEnd(_state);
        byte[][] tokens = _engine.Vocabulary.TokenBytes;
        if ((uint)tokenId >= (uint)tokens.Length || tokens[tokenId].Length == 0)
            return false;
        return _engine.Advance(_state, tokens[tokenId]) != 0;
    }

    /// <summary>Advances past <paramref name="tokenId"/> when it is allowed; returns false (and stays) when it is not.</summary>
    public bool TryAccept(int tokenId)
    {
        if (_ended)
            return false;
        if (IsEndToken(tokenId))
        {
            if (!_engine.CanEnd(_state))
                return false;
            _ended = true;
            return true;
        }
        byte[][] tokens = _engine.Vocabulary.TokenBytes;
        if ((uint)tokenId >= (uint)tokens.Length || tokens[tokenId].Length == 0)
            return false;
        int next = _engine.Advance(_state, tokens[tokenId]);
        if (next == 0)
            return false;
        _state = next;
        return true;
    }

    /// <summary>Advances past <paramref name="tokenId"/>.</summary>
    /// <exception cref="InvalidOperationException">The grammar does not allow the token here.</exception>
    public void Accept(int tokenId)
    {
        if (!TryAccept(tokenId))
            throw new InvalidOperationException($"The grammar does not allow token {tokenId} here.");
    }

    /// <summary>Starts again from the beginning of the grammar.</summary>
    public void Reset()
    {
        _state = _engine.InitialState;
        _ended = false;
    }

    /// <summary>
    /// Sets the logit of every token that may not come next to negative infinity (end tokens keep theirs where the
    /// grammar is complete). Returns how many tokens are still allowed.
    /// </summary>
    public int ApplyMask(Span<float> logits) => ApplyMask(logits, releaseWhenFinished: false);

    /// <inheritdoc cref="ApplyMask(Span{float})"/>
    /// <param name="logits">The logits [VocabSize].</param>
    /// <param name="releaseWhenFinished">Also allow tokens that finish the grammar before their end (a lazy grammar lets go there).</param>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal int ApplyMask(Span<float> logits, bool releaseWhenFinished)
    {
        if (_ended)
        {
            logits.Fill(float.NegativeInfinity);
            return 0;
        }
        ulong[] mask = _engine.Mask(_state, releaseWhenFinished);
        bool canEnd = _engine.CanEnd(_state);
        Span<float> saved = stackalloc float[Math.Min(_endTokens.Length, 64)];
        int endCount = Math.Min(_endTokens.Length, 64);
        for (int i = 0; i < endCount; i++)
            saved[i] = (uint)_endTokens[i] < (uint)logits.Length ? logits[_endTokens[i]] : 0f;

        int allowed = 0;
        int words = Math.Min(mask.Length, (logits.Length + 63) >> 6);
        for (int w = 0; w < words; w++)
        {
            ulong bits = mask[w];
            int baseId = w << 6;
            if (bits == ulong.MaxValue && baseId + 64 <= logits.Length)
            {
                allowed += 64;
                continue;
            }
            int limit = Math.Min(64, logits.Length - baseId);
            ulong blocked = ~bits & (limit == 64 ? ulong.MaxValue : (1UL << limit) - 1);
            allowed += limit - BitOperations.PopCount(blocked);
            while (blocked != 0)
            {
                int bit = BitOperations.TrailingZeroCount(blocked);
                logits[baseId + bit] = float.NegativeInfinity;
                blocked &= blocked - 1;
            }
        }
        // Ids past the tokenizer's vocabulary (a model's padding) are never text.
        if (words << 6 < logits.Length)
            logits[(words << 6)..].Fill(float.NegativeInfinity);

        for (int i = 0; i < endCount; i++)
        {
            int id = _endTokens[i];
            if ((uint)id >= (uint)logits.Length)
                continue;
            bool wasAllowed = !float.IsNegativeInfinity(logits[id]);
            if (canEnd)
            {
                if (!wasAllowed)
                    allowed++;
                logits[id] = saved[i];
            }
            else
            {
                if (wasAllowed)
                    allowed--;
                logits[id] = float.NegativeInfinity;
            }
        }
        return allowed;
    }

    internal bool IsEndToken(int tokenId)
    {
        foreach (int id in _endTokens)
        {
            if (id == tokenId)
                return true;
        }
        return false;
    }
}
