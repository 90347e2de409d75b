using System;
using Xunit;

namespace Llama.Compiled.Tests;

/// <summary>The frequency and presence penalties (OpenAI's, as llama.cpp applies them).</summary>
public class SamplerPenaltyTests
{
    private static readonly SamplingOptions Greedy = new() { Temperature = 0f };

    [Fact]
    public void FrequencyPenaltyCountsOccurrences()
    {
        var sampler = new Sampler(3, Greedy with { FrequencyPenalty = 0.5f });

        // Token 0 three times: 2 - 3 * 0.5 = 0.5 < 1.
        Assert.Equal(1, sampler.Sample([2f, 1f, 0f], [0, 0, 0]));
        // Twice: 2 - 1 = 1, a tie with token 1 that the lower id wins.
        Assert.Equal(0, sampler.Sample([2f, 1f, 0f], [0, 0]));
        // Once: 1.5 > 1.
        Assert.Equal(0, sampler.Sample([2f, 1f, 0f], [0, 2]));
    }

    [Fact]
    public void PresencePenaltyCountsEachTokenOnce()
    {
        var sampler = new Sampler(3, Greedy with { PresencePenalty = 0.6f });

        // 2 - 0.6 = 1.4 > 1 however often token 0 occurs.
        Assert.Equal(0, sampler.Sample([2f, 1f, 0f], [0, 0, 0, 0]));
        Assert.Equal(1, sampler.Sample([2f, 1.5f, 0f], [0]));
    }

    [Fact]
    public void NegativePenaltiesEncourageRepeats()
    {
        var sampler = new Sampler(3, Greedy with { FrequencyPenalty = -1f });

        Assert.Equal(2, sampler.Sample([2f, 1f, 0f], [2, 2, 2]));
    }

    [Fact]
    public void PenaltiesFollowTheRepetitionPenaltyAndItsWindow()
    {
        // llama.cpp: logit / 2 for the repetition penalty, then - count * 0.25 - 0.25.
        var options = Greedy with { RepetitionPenalty = 2f, FrequencyPenalty = 0.25f, PresencePenalty = 0.25f, RepetitionWindow = 2 };

        // Token 0 in the window twice: 3 / 2 - 0.5 - 0.25 = 0.75 < 1.
        Assert.Equal(1, new Sampler(3, options).Sample([3f, 1f, 0f], [2, 0, 0]));
        // Only the last two tokens count: token 0 is outside the window.
        Assert.Equal(0, new Sampler(3, options).Sample([3f, 1f, 0f], [0, 2, 2]));
    }

    [Theory]
    [InlineData(nameof(SamplingOptions.FrequencyPenalty))]
    [InlineData(nameof(SamplingOptions.PresencePenalty))]
    public void NonFiniteValuesAreRejected(string name)
    {
        SamplingOptions options = name == nameof(SamplingOptions.FrequencyPenalty)
            ? new SamplingOptions { FrequencyPenalty = float.NaN }
            : new SamplingOptions { PresencePenalty = float.PositiveInfinity };

        Assert.Throws<ArgumentOutOfRangeException>(name, () => new Sampler(4, options));
    }
}
