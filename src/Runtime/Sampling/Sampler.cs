using System;
using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using Llama.Compiled.CompilerServices;

namespace Llama.Compiled;

/// <summary>
/// Picks the next token from a model's logits: repetition, frequency and presence penalties, then greedy (temperature 0) or
/// temperature → softmax → top-k → top-p → min-p → a draw from what is left. Buffers are allocated
/// once, so <see cref="Sample(ReadOnlySpan{float}, ReadOnlySpan{int})"/> does not allocate. Not thread-safe: one sampler per sequence.
/// </summary>
public sealed class Sampler
{
    private readonly float _temperature;
    private readonly int _topK;
    private readonly float _topP;
    private readonly float _minP;
    private readonly float _repetitionPenalty;
    private readonly float _frequencyPenalty;
    private readonly float _presencePenalty;
    private readonly int _repetitionWindow;

    // Penalized logits, then unnormalized probabilities exp(logit/T - max), one per token.
    private readonly float[] _weights;
    // The tokens still in the running after the filters, as OrderKey values.
    private readonly ulong[] _candidates;
    // _seen[t] == _stamp marks token t as already counted in this call.
    private readonly int[] _seen;
    // Occurrences of token t in the window (valid where _seen[t] == _stamp), for the frequency penalty.
    private readonly int[] _counts;
    // The distinct tokens of the window, in first-seen order.
    private readonly int[] _distinct;
    private int _stamp;
    private Xoshiro256StarStar _rng;

    /// <summary>Creates a sampler for a vocabulary of <paramref name="vocabSize"/> tokens.</summary>
    /// <exception cref="ArgumentOutOfRangeException">
    /// <paramref name="vocabSize"/> is not positive, or an option is out of range (the exception's
    /// parameter name is the option's name).
    /// </exception>
    public Sampler(int vocabSize, SamplingOptions options)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(vocabSize);
        ArgumentNullException.ThrowIfNull(options);
        if (!(options.Temperature >= 0f) || float.IsPositiveInfinity(options.Temperature))
            throw new ArgumentOutOfRangeException(nameof(options.Temperature), options.Temperature, "Temperature must be a finite number >= 0 (0 = greedy).");
        if (options.TopK < 0)
            throw new ArgumentOutOfRangeException(nameof(options.TopK), options.TopK, "TopK must be >= 0 (0 = off).");
        if (!(options.TopP >= 0f && options.TopP <= 1f))
            throw new ArgumentOutOfRangeException(nameof(options.TopP), options.TopP, "TopP must be in [0, 1] (1 = off).");
        if (!(options.MinP >= 0f && options.MinP <= 1f))
            throw new ArgumentOutOfRangeException(nameof(options.MinP), options.MinP, "MinP must be in [0, 1] (0 = off).");
        if (!(options.RepetitionPenalty > 0f) || float.IsPositiveInfinity(options.RepetitionPenalty))
            throw new ArgumentOutOfRangeException(nameof(options.RepetitionPenalty), options.RepetitionPenalty, "RepetitionPenalty must be a finite number > 0 (1 = off).");
        if (!float.IsFinite(options.FrequencyPenalty))
            throw new ArgumentOutOfRangeException(nameof(options.FrequencyPenalty), options.FrequencyPenalty, "FrequencyPenalty must be a finite number (0 = off).");
        if (!float.IsFinite(options.PresencePenalty))
            throw new ArgumentOutOfRangeException(nameof(options.PresencePenalty), options.PresencePenalty, "PresencePenalty must be a finite number (0 = off).");
        if (options.RepetitionWindow < 0)
            throw new ArgumentOutOfRangeException(nameof(options.RepetitionWindow), options.RepetitionWindow, "RepetitionWindow must be >= 0.");

        VocabSize = vocabSize;
        Options = options;
        _temperature = options.Temperature;
        // Keeping all tokens (or more) is no filter.
        _topK = options.TopK < vocabSize ? options.TopK : 0;
        _topP = options.TopP;
        _minP = options.MinP;
        _repetitionPenalty = options.RepetitionPenalty;
        _frequencyPenalty = options.FrequencyPenalty;
        _presencePenalty = options.PresencePenalty;
        _repetitionWindow = options.RepetitionWindow;

        _weights = new float[vocabSize];
        _candidates = new ulong[vocabSize];
        bool penalized = HasPenalties;
        _seen = penalized ? new int[vocabSize] : [];
        _counts = penalized && _frequencyPenalty != 0f ? new int[vocabSize] : [];
        _distinct = penalized ? new int[Math.Min(_repetitionWindow, vocabSize)] : [];

        Seed = options.Seed ?? RandomSeed();
        _rng = new Xoshiro256StarStar(Seed);
    }

    /// <summary>Number of logits <see cref="Sample(ReadOnlySpan{float}, ReadOnlySpan{int})"/> expects.</summary>
    public int VocabSize { get; }

    /// <summary>The options this sampler was created with.</summary>
    public SamplingOptions Options { get; }

    /// <summary>The seed in use: <see cref="SamplingOptions.Seed"/>, or the random one drawn when it was null.</summary>
    public ulong Seed { get; }

    /// <summary>Chooses the next token.</summary>
    /// <param name="logits">The model's logits for the next token, <see cref="VocabSize"/> of them. Not modified.</param>
    /// <param name="recentTokens">
    /// The tokens so far (prompt included), oldest first; the repetition penalty looks at the last
    /// <see cref="SamplingOptions.RepetitionWindow"/> of them.
    /// </param>
    /// <returns>The chosen token id.</returns>
    // The per-token methods are compiled fully optimized at their first call (no tier-0 code over the vocabulary).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public int Sample(ReadOnlySpan<float> logits, ReadOnlySpan<int> recentTokens)
    {
        if (logits.Length != VocabSize)
            throw new ArgumentException($"Expected {VocabSize} logits, got {logits.Length}.", nameof(logits));
        logits.CopyTo(_weights);
        return SampleWeights(recentTokens);
    }

    /// <summary>
    /// Chooses the next token among those <paramref name="grammar"/> allows (it is not advanced: accept the token with
    /// <see cref="GrammarMatcher.Accept"/>). The token is first drawn as usual and kept when the grammar allows it; only
    /// otherwise are the logits masked and a token drawn again, so a model that mostly follows the grammar costs a
    /// check of one token per step. Without top-k or top-p this draws from exactly the masked distribution.
    /// </summary>
    /// <exception cref="InvalidOperationException">The grammar allows no token at all here.</exception>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public int Sample(ReadOnlySpan<float> logits, ReadOnlySpan<int> recentTokens, GrammarMatcher? grammar)
    {
        int token = Sample(logits, recentTokens);
        if (grammar is null || grammar.IsAllowed(token))
            return token;
        logits.CopyTo(_weights);
        if (grammar.ApplyMask(_weights) == 0)
            throw new InvalidOperationException("The grammar allows no token here (and the output is not complete).");
        return SampleWeights(recentTokens);
    }

    /// <summary>Samples from the logits in _weights (changing them).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private int SampleWeights(ReadOnlySpan<int> recentTokens)
    {
        Span<float> w = _weights;
        if (HasPenalties)
            ApplyPenalties(w, recentTokens);

        if (_temperature == 0f)
            return KernelMath.IndexOfMax(w); // the first index among equal maxima

        if (_temperature != 1f)
            KernelMath.Divide(w, _temperature);
        int top = KernelMath.IndexOfMax(w);
        KernelMath.SubtractExp(w, w[top]);
        // Probabilities are left unnormalized: every threshold below is scaled by the mass it is
        // relative to instead, which saves a pass over the vocabulary.
        float maxWeight = w[top];

        if (_topK == 0 && _topP >= 1f && _minP == 0f)
            return Draw(w);

        Span<ulong> candidates = _candidates;
        float minPThreshold = _minP * maxWeight;
        int count;
        double nucleusMass = 0;
        if (_topK > 0)
        {
            count = SelectTopK(w, candidates, _topK);
            candidates[..count].Sort();
            // As in llama.cpp, top-p then sees the distribution renormalized over the k survivors.
            foreach (ulong candidate in candidates[..count])
                nucleusMass += w[Id(candidate)];
        }
        else if (_topP < 1f)
        {
            float total = KernelMath.Sum(w);
            nucleusMass = total;
            // llama2.c's cutoff: a token less likely than (1 - p) / (n - 1) cannot be in the nucleus,
            // so only the few above it are sorted. Clamped to the top token so that it always stays.
            // The min-p threshold can be applied here too: it only removes tokens from the tail.
            float cutoff = MathF.Min((1f - _topP) / (VocabSize - 1) * total, maxWeight);
            count = Filter(w, candidates, MathF.Max(cutoff, minPThreshold));
            candidates[..count].Sort();
        }
        else
        {
            count = Filter(w, candidates, minPThreshold);
        }

        if (_topP < 1f)
        {
            // The smallest most-likely-first prefix whose probability exceeds p; at least one token.
            double limit = _topP * nucleusMass, cumulative = 0;
            for (int i = 0; i < count; i++)
            {
                cumulative += w[Id(candidates[i])];
                if (cumulative > limit)
                {
                    count = i + 1;
                    break;
                }
            }
        }

        // Candidates from top-k are sorted and unfiltered: drop the tail below min-p. (The other
        // paths already filtered by it, so this loop stops at once there.)
        while (count > 1 && w[Id(candidates[count - 1])] < minPThreshold)
            count--;

        return Draw(w, candidates[..count]);
    }

    private bool HasPenalties =>
        _repetitionWindow > 0 && (_repetitionPenalty != 1f || _frequencyPenalty != 0f || _presencePenalty != 0f);

    /// <summary>
    /// llama.cpp's penalties over the last <see cref="SamplingOptions.RepetitionWindow"/> tokens: each
    /// distinct token's logit is divided (positive) or multiplied (negative) by the repetition penalty,
    /// then lowered by count × frequency penalty + presence penalty.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void ApplyPenalties(Span<float> logits, ReadOnlySpan<int> recentTokens)
    {
        if (recentTokens.Length > _repetitionWindow)
            recentTokens = recentTokens[^_repetitionWindow..];
        // A new stamp per call marks the tokens seen without clearing an array every call.
        if (++_stamp == int.MaxValue)
        {
            Array.Clear(_seen);
            _stamp = 1;
        }
        bool counting = _counts.Length > 0;
        int distinct = 0;
        foreach (int token in recentTokens)
        {
            if ((uint)token >= (uint)logits.Length)
                throw new ArgumentOutOfRangeException(nameof(recentTokens), token, $"Token id outside the vocabulary of {VocabSize}.");
            if (_seen[token] == _stamp)
            {
                if (counting)
                    _counts[token]++;
                continue;
            }
            _seen[token] = _stamp;
            if (counting)
                _counts[token] = 1;
            _distinct[distinct++] = token;
        }
        foreach (int token in _distinct.AsSpan(0, distinct))
        {
            float logit = logits[token];
            if (_repetitionPenalty != 1f)
                logit = logit > 0f ? logit / _repetitionPenalty : logit * _repetitionPenalty;
            if (counting)
                logit -= _counts[token] * _frequencyPenalty;
            logit -= _presencePenalty;
            logits[token] = logit;
        }
    }

    /// <summary>
    /// Sort key of a token: ascending keys are most likely first, lower id first among equals. A total
    /// order, so which tokens are kept and the order they are drawn in do not depend on the sort
    /// algorithm; and sorting plain integers needs no comparison delegate.
    /// </summary>
    private static ulong OrderKey(float weight, int id) =>
        // Weights are >= 0, whose bit patterns order like their values; inverted for descending.
        ((ulong)~BitConverter.SingleToUInt32Bits(weight) << 32) | (uint)id;

    private static int Id(ulong orderKey) => (int)(uint)orderKey;

    /// <summary>Writes the tokens weighing at least <paramref name="threshold"/> to <paramref name="candidates"/>, in id order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int Filter(ReadOnlySpan<float> weights, Span<ulong> candidates, float threshold)
    {
        int count = 0;
        for (int i = 0; i < weights.Length; i++)
        {
            if (weights[i] >= threshold)
                candidates[count++] = OrderKey(weights[i], i);
        }
        return count;
    }

    /// <summary>
    /// Writes the <paramref name="k"/> most likely tokens to <paramref name="heap"/> (unordered).
    /// A max-heap of the keys of the best k so far, the worst at the root: O(n log k), and most tokens
    /// are rejected by a single comparison with the root.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int SelectTopK(ReadOnlySpan<float> weights, Span<ulong> heap, int k)
    {
        for (int i = 0; i < k; i++)
        {
            heap[i] = OrderKey(weights[i], i);
            for (int child = i; child > 0;)
            {
                int parent = (child - 1) / 2;
                if (heap[parent] >= heap[child])
                    break;
                (heap[parent], heap[child]) = (heap[child], heap[parent]);
                child = parent;
            }
        }
        for (int i = k; i < weights.Length; i++)
        {
            ulong key = OrderKey(weights[i], i);
            if (key >= heap[0])
                continue;
            heap[0] = key;
            for (int node = 0; ;)
            {
                int worst = 2 * node + 1;
                if (worst >= k)
                    break;
                if (worst + 1 < k && heap[worst + 1] > heap[worst])
                    worst++;
                if (heap[node] >= heap[worst])
                    break;
                (heap[node], heap[worst]) = (heap[worst], heap[node]);
                node = worst;
            }
        }
        return k;
    }

    /// <summary>Draws a token with probability proportional to its weight.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private int Draw(ReadOnlySpan<float> weights)
    {
        double r = _rng.NextDouble() * KernelMath.Sum(weights);
        double cumulative = 0;
        int lastPositive = 0;
        for (int i = 0; i < weights.Length; i++)
        {
            float weight = weights[i];
            if (weight <= 0f)
                continue;
            cumulative += weight;
            if (r < cumulative)
                return i;
            lastPositive = i;
        }
        // Only reached when rounding left r at or above the summed total.
        return lastPositive;
    }

    /// <summary>Draws one of <paramref name="candidates"/> with probability proportional to its weight.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private int Draw(ReadOnlySpan<float> weights, ReadOnlySpan<ulong> candidates)
    {
        double mass = 0;
        foreach (ulong candidate in candidates)
            mass += weights[Id(candidate)];
        double r = _rng.NextDouble() * mass, cumulative = 0;
        int lastPositive = Id(candidates[0]);
        foreach (ulong candidate in candidates)
        {
            int id = Id(candidate);
            float weight = weights[id];
            if (weight <= 0f)
                continue;
            cumulative += weight;
            if (r < cumulative)
                return id;
            lastPositive = id;
        }
        return lastPositive;
    }

    private static ulong RandomSeed()
    {
        Span<byte> bytes = stackalloc byte[sizeof(ulong)];
        RandomNumberGenerator.Fill(bytes);
        return BinaryPrimitives.ReadUInt64LittleEndian(bytes);
    }
}
