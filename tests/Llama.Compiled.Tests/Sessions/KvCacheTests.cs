using System;
using System.IO;
using System.Linq;
using Llama.Compiled.CompilerServices;
using Xunit;

namespace Llama.Compiled.Tests;

/// <summary>The runtime's KV cache and RoPE table, directly.</summary>
public sealed class KvCacheTests
{
    private static float[] Ramp(int n, float start) => Enumerable.Range(0, n).Select(i => start + i).ToArray();

    [Fact]
    public void AppendWritesEachHeadIntoItsOwnBlockOfPositions()
    {
        var cache = new KvCache(layerCount: 2, kvHeadCount: 3, headDim: 4, maxContext: 5);
        cache.Append(1, 2, Ramp(12, 100), Ramp(12, 200));
        float[] keys = cache.Keys(1), values = cache.Values(1);
        for (int head = 0; head < 3; head++)
        {
            int row = (head * 5 + 2) * 4; // [KvHeadCount, MaxContext, HeadDim]
            Assert.Equal(Ramp(4, 100 + head * 4), keys.AsSpan(row, 4).ToArray());
            Assert.Equal(Ramp(4, 200 + head * 4), values.AsSpan(row, 4).ToArray());
        }
        Assert.All(cache.Keys(0), k => Assert.Equal(0f, k));
        Assert.Equal(12, keys.Count(k => k != 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => cache.Append(0, 5, new float[12], new float[12]));
    }

    [Fact]
    public void ShiftDropsTheRangeAfterTheKeptPositionsAndMovesTheRestDown()
    {
        var cache = new KvCache(1, 2, 2, 8);
        for (int pos = 0; pos < 7; pos++)
            cache.Append(0, pos, [pos, pos, 10 + pos, 10 + pos], [-pos, -pos, -10 - pos, -10 - pos]);
        cache.Shift(keep: 1, discard: 3, used: 7); // keeps 0, drops 1–3, moves 4–6 to 1–3
        int[] expected = [0, 4, 5, 6];
        for (int head = 0; head < 2; head++)
        {
            Span<float> keys = cache.KeyRows(0, head, 0, 4);
            for (int p = 0; p < 4; p++)
            {
                Assert.Equal(head * 10 + expected[p], keys[p * 2]);
                Assert.Equal(-(head * 10 + expected[p]), cache.Values(0)[(head * 8 + p) * 2]);
            }
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => cache.Shift(2, 6, 7));
    }

    [Fact]
    public void WriteAndReadRoundTripThePositionsInUse()
    {
        var cache = new KvCache(2, 2, 4, 6);
        var random = new Random(1);
        for (int layer = 0; layer < 2; layer++)
        {
            for (int pos = 0; pos < 4; pos++)
                cache.Append(layer, pos, Enumerable.Range(0, 8).Select(_ => random.NextSingle()).ToArray(), Enumerable.Range(0, 8).Select(_ => random.NextSingle()).ToArray());
        }
        var stream = new MemoryStream();
        cache.Write(stream, 4);
        Assert.Equal(2 * 2 * 2 * 4 * 4 * sizeof(float), stream.Length); // layers × (k, v) × heads × positions × HeadDim

        var copy = new KvCache(2, 2, 4, 6);
        stream.Position = 0;
        copy.Read(stream, 4);
        for (int layer = 0; layer < 2; layer++)
        {
            Assert.Equal(cache.Keys(layer), copy.Keys(layer));
            Assert.Equal(cache.Values(layer), copy.Values(layer));
        }
        stream.Position = 0;
        stream.SetLength(stream.Length - 1);
        Assert.Throws<InvalidDataException>(() => new KvCache(2, 2, 4, 6).Read(stream, 4));
    }

    [Theory]
    [InlineData(RopeLayout.AdjacentPairs)]
    [InlineData(RopeLayout.RotateHalf)]
    public void RotatingBackComposesWithTheForwardRotation(RopeLayout layout)
    {
        float[] inverse = [1f, 0.3f, 0.05f, 0.001f];
        var rope = new RopeTable(inverse, maxContext: 64, headDim: 8, layout);
        var random = new Random(2);
        float[] original = Enumerable.Range(0, 16).Select(_ => random.NextSingle() * 2 - 1).ToArray(); // two heads

        float[] atForty = (float[])original.Clone();
        rope.Rotate(atForty, 40);
        rope.RotateBack(atForty, 15);
        float[] atTwentyFive = (float[])original.Clone();
        rope.Rotate(atTwentyFive, 25);
        for (int i = 0; i < 16; i++)
            Assert.Equal(atTwentyFive[i], atForty[i], 5);

        // Which dimensions pair up follows the layout: rotating by position 1 mixes exactly those.
        float[] unit = new float[8];
        unit[0] = 1;
        rope.Rotate(unit, 1);
        int partner = layout == RopeLayout.AdjacentPairs ? 1 : 4;
        Assert.Equal(MathF.Cos(1f), unit[0], 6);
        Assert.Equal(MathF.Sin(1f), unit[partner], 6);
        Assert.Equal(2, unit.Count(v => v != 0));
    }
}
