using System;
using System.Linq;
using Xunit;

namespace Llama.Compiled.Tests;

/// <summary>
/// The sampler allocates nothing per call. In the serial collection because the allocation meter counts every
/// thread of the process (moved here from SamplerTests and SamplerPenaltyTests, which run in parallel with others).
/// </summary>
[Collection(SerialReliabilityCollection.Name)]
public sealed class SamplerAllocationTests
{
    private static float[] RandomLogits(int count, int seed, float scale = 3f)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => (float)(random.NextDouble() * 2 - 1) * scale).ToArray();
    }

    [Theory]
    [InlineData(1f, 0, 1f, 0f, 1f)]
    [InlineData(0.8f, 0, 0.9f, 0f, 1f)]
    [InlineData(1f, 40, 1f, 0f, 1f)]
    [InlineData(1f, 40, 0.95f, 0.05f, 1.1f)]
    [InlineData(1f, 0, 1f, 0.05f, 1f)]
    [InlineData(0f, 0, 1f, 0f, 1.2f)]
    public void SampleDoesNotAllocate(float temperature, int topK, float topP, float minP, float penalty)
    {
        var sampler = new Sampler(32000, new SamplingOptions
        {
            Temperature = temperature, TopK = topK, TopP = topP, MinP = minP, RepetitionPenalty = penalty, Seed = 2,
        });
        float[] logits = RandomLogits(32000, 8);
        int[] recent = Enumerable.Range(0, 100).ToArray();
        // Warm up every path first: tiered compilation may allocate once when it swaps in optimized code.
        for (int i = 0; i < 50; i++)
            sampler.Sample(logits, recent);

        AllocationMeter.AssertSomeWindowAllocatesNothing(200, () =>
        {
            for (int i = 0; i < 200; i++)
                sampler.Sample(logits, recent);
        });
    }

    [Fact]
    public void PenaltiesDoNotAllocate()
    {
        var sampler = new Sampler(32000, new SamplingOptions { Temperature = 0.8f, TopP = 0.9f, FrequencyPenalty = 0.3f, PresencePenalty = 0.2f, Seed = 1 });
        float[] logits = new float[32000];
        int[] recent = new int[200];
        for (int i = 0; i < recent.Length; i++)
            recent[i] = i % 37;
        sampler.Sample(logits, recent);

        AllocationMeter.AssertSomeWindowAllocatesNothing(200, () =>
        {
            for (int i = 0; i < 200; i++)
                sampler.Sample(logits, recent);
        });
    }
}
