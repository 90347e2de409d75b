namespace Llama.Compiled;

/// <summary>
/// How the next token is chosen from the logits. The defaults sample from the unmodified
/// distribution; <see cref="Sampler"/> validates the values.
/// </summary>
public sealed record SamplingOptions
{
    /// <summary>
    /// Divides the logits before the softmax: below 1 sharpens, above 1 flattens the distribution.
    /// 0 picks the most likely token (greedy) and ignores the filters below. Default 1.
    /// </summary>
    public float Temperature { get; init; } = 1f;

    /// <summary>Keeps only the <c>TopK</c> most likely tokens. 0 (the default) turns the filter off.</summary>
    public int TopK { get; init; }

    /// <summary>
    /// Nucleus sampling: keeps the most likely tokens whose probabilities add up to more than
    /// <c>TopP</c> (at least one token). 1 (the default) turns the filter off.
    /// </summary>
    public float TopP { get; init; } = 1f;

    /// <summary>
    /// Keeps only tokens whose probability is at least <c>MinP</c> times that of the most likely
    /// token. 0 (the default) turns the filter off.
    /// </summary>
    public float MinP { get; init; }

    /// <summary>
    /// llama.cpp's repetition penalty: the logit of every distinct token among the last
    /// <see cref="RepetitionWindow"/> tokens is divided by this value when positive and multiplied
    /// by it when negative. 1 (the default) turns the penalty off.
    /// </summary>
    public float RepetitionPenalty { get; init; } = 1f;

    /// <summary>
    /// How many of the most recent tokens <see cref="RepetitionPenalty"/>, <see cref="FrequencyPenalty"/>
    /// and <see cref="PresencePenalty"/> look at. Default 64.
    /// </summary>
    public int RepetitionWindow { get; init; } = 64;

    /// <summary>
    /// OpenAI's frequency penalty, as llama.cpp applies it: subtracted from the logit of every token
    /// once per occurrence among the last <see cref="RepetitionWindow"/> tokens (after
    /// <see cref="RepetitionPenalty"/>). Positive values discourage repeating tokens, negative values
    /// encourage it. 0 (the default) turns the penalty off.
    /// </summary>
    public float FrequencyPenalty { get; init; }

    /// <summary>
    /// OpenAI's presence penalty, as llama.cpp applies it: subtracted once from the logit of every
    /// token that occurs among the last <see cref="RepetitionWindow"/> tokens, however often. 0 (the
    /// default) turns the penalty off.
    /// </summary>
    public float PresencePenalty { get; init; }

    /// <summary>
    /// Seed of the sampler's random number generator: the same seed, options and logits give the
    /// same tokens. <see langword="null"/> (the default) draws a random seed.
    /// </summary>
    public ulong? Seed { get; init; }
}
