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

    /// <summary>One layer's keys (or values) as floats, [KvHeadCount, MaxContext, HeadDim], read head by head through the tiles.</summary>
    private static float[] Layer(KvCache cache, int layer, bool values = false)
    {
        var tile = new float[cache.MaxContext * cache.HeadDim];
        return Enumerable.Range(0, cache.KvHeadCount).SelectMany(head => (values
            ? cache.ValueTile(layer, head, 0, cache.MaxContext, tile)
            : cache.KeyTile(layer, head, 0, cache.MaxContext, tile)).ToArray()).ToArray();
    }

    [Fact]
    public void AppendWritesEachHeadIntoItsOwnBlockOfPositions()
    {
        var cache = new KvCache(layerCount: 2, kvHeadCount: 3, headDim: 4, maxContext: 5);
        cache.Append(1, 2, Ramp(12, 100), Ramp(12, 200));
        float[] keys = Layer(cache, 1), values = Layer(cache, 1, values: true);
        for (int head = 0; head < 3; head++)
        {
            int row = (head * 5 + 2) * 4; // [KvHeadCount, MaxContext, HeadDim]
            Assert.Equal(Ramp(4, 100 + head * 4), keys.AsSpan(row, 4).ToArray());
            Assert.Equal(Ramp(4, 200 + head * 4), values.AsSpan(row, 4).ToArray());
        }
        Assert.All(Layer(cache, 0), k => Assert.Equal(0f, k));
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
                Assert.Equal(-(head * 10 + expected[p]), Layer(cache, 0, values: true)[(head * 8 + p) * 2]);
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
            Assert.Equal(Layer(cache, layer), Layer(copy, layer));
            Assert.Equal(Layer(cache, layer, values: true), Layer(copy, layer, values: true));
        }
        stream.Position = 0;
        stream.SetLength(stream.Length - 1);
        Assert.Throws<InvalidDataException>(() => new KvCache(2, 2, 4, 6).Read(stream, 4));
    }

    [Theory]
    [InlineData(KvCacheFormat.F16, 8)]
    [InlineData(KvCacheFormat.Q8_0, 8)]  // a head narrower than a q8_0 block is one block
    [InlineData(KvCacheFormat.Q8_0, 64)] // two blocks of 32 per head, as llama.cpp's q8_0
    public void ReducedFormatsKeepEachValueWithinTheirRoundingError(KvCacheFormat format, int headDim)
    {
        var random = new Random(5);
        var cache = new KvCache(1, 2, headDim, 3, format);
        float[] keys = Enumerable.Range(0, 2 * headDim).Select(_ => (random.NextSingle() - 0.5f) * 8).ToArray();
        float[] values = Enumerable.Range(0, 2 * headDim).Select(_ => (random.NextSingle() - 0.5f) * 8).ToArray();
        cache.Append(0, 1, keys, values);
        int block = format == KvCacheFormat.Q8_0 ? cache.Q8BlockSize : 1;
        Assert.Equal(headDim % 32 == 0 ? 32 : headDim, cache.Q8BlockSize);
        foreach ((float[] written, bool isValues) in new[] { (keys, false), (values, true) })
        {
            float[] read = Layer(cache, 0, isValues);
            for (int head = 0; head < 2; head++)
            {
                for (int i = 0; i < headDim; i++)
                {
                    float x = written[head * headDim + i], y = read[(head * 3 + 1) * headDim + i];
                    // F16: round to nearest, relative error ≤ 2^-11. Q8_0: |x − d·round(x/d)| ≤ d/2 with d = max|block| / 127,
                    // plus the scale's own F16 rounding (≤ 2^-11 relative) times |round(x/d)| ≤ 127.
                    float amax = written.Skip(head * headDim + i / block * block).Take(block).Max(MathF.Abs);
                    float bound = format == KvCacheFormat.F16 ? MathF.Abs(x) / 2048 : amax / 127 / 2 + amax / 2048;
                    Assert.True(MathF.Abs(x - y) <= bound, $"{format} head {head} [{i}]: {x} read back as {y}, bound {bound}");
                }
            }
        }
        Assert.All(Layer(cache, 0).Take(headDim), k => Assert.Equal(0f, k)); // position 0 untouched
    }

    [Theory]
    [InlineData(KvCacheFormat.F32, 4)]
    [InlineData(KvCacheFormat.F16, 2)]
    [InlineData(KvCacheFormat.Q8_0, 1)]
    public void EveryFormatShiftsAndRoundTripsItsStoredBytes(KvCacheFormat format, int bytesPerValue)
    {
        var random = new Random(2);
        var cache = new KvCache(2, 2, 32, 6, format);
        for (int layer = 0; layer < 2; layer++)
        {
            for (int pos = 0; pos < 5; pos++)
                cache.Append(layer, pos, Enumerable.Range(0, 64).Select(_ => random.NextSingle()).ToArray(), Enumerable.Range(0, 64).Select(_ => random.NextSingle()).ToArray());
        }
        float[] before = Layer(cache, 1), beforeValues = Layer(cache, 1, values: true);
        cache.Shift(keep: 1, discard: 2, used: 5); // positions 3, 4 move to 1, 2 exactly, in every format
        float[] after = Layer(cache, 1), afterValues = Layer(cache, 1, values: true);
        for (int head = 0; head < 2; head++)
        {
            Assert.Equal(before.AsSpan((head * 6 + 3) * 32, 64).ToArray(), after.AsSpan((head * 6 + 1) * 32, 64).ToArray());
            Assert.Equal(beforeValues.AsSpan((head * 6 + 3) * 32, 64).ToArray(), afterValues.AsSpan((head * 6 + 1) * 32, 64).ToArray());
        }

        var stream = new MemoryStream();
        cache.Write(stream, 3);
        int scaleBytes = format == KvCacheFormat.Q8_0 ? sizeof(float) : 0; // one per 32-value block
        Assert.Equal(2 * 2 * 2 * 3 * (32 * bytesPerValue + scaleBytes), stream.Length); // layers × (k, v) × heads × positions × a row
        Assert.Equal(2 * 2 * 2 * 6 * (32 * bytesPerValue + scaleBytes), cache.Bytes);
        var copy = new KvCache(2, 2, 32, 6, format);
        stream.Position = 0;
        copy.Read(stream, 3);
        Assert.Equal(Layer(cache, 0).AsSpan(0, 3 * 32).ToArray(), Layer(copy, 0).AsSpan(0, 3 * 32).ToArray());
        Assert.Equal(Layer(cache, 1, values: true).AsSpan(6 * 32, 3 * 32).ToArray(), Layer(copy, 1, values: true).AsSpan(6 * 32, 3 * 32).ToArray());
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
