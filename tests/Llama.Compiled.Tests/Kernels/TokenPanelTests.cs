using System;
using System.Runtime.CompilerServices;
using Llama.Compiled.CompilerServices;
using Xunit;

namespace Llama.Compiled.Tests;

/// <summary>The F32 prefill panels: x transposed into [cols, 64] and the kernels' [rows, 64] sums back into [tokens, rows].</summary>
public sealed class TokenPanelTests
{
    [Theory]
    [InlineData(8, 0, 1)]
    [InlineData(8, 3, 8)]
    [InlineData(24, 0, 13)]   // a partial group of 8 tokens
    [InlineData(64, 5, 32)]
    [InlineData(288, 1, 45)]
    [InlineData(64, 0, 64)]
    public void PackTransposesTheTokensAndZeroesThePadding(int cols, int first, int count)
    {
        float[] x = new float[(first + count + 1) * cols];
        for (int i = 0; i < x.Length; i++)
            x[i] = i + 1;
        // A previous, wider pack leaves other values in the thread's panel; the padding must be zeros regardless.
        TokenPanel.Pack(x, cols, 0, Math.Min(TokenPanel.Tokens, first + count + 1));

        ref float panel = ref TokenPanel.Pack(x, cols, first, count);
        for (int k = 0; k < cols; k++)
        {
            for (int t = 0; t < TokenPanel.Tokens; t++)
            {
                float expected = t < count ? x[(first + t) * cols + k] : 0f;
                Assert.Equal(expected, Unsafe.Add(ref panel, k * TokenPanel.Tokens + t));
            }
        }
    }

    [Theory]
    [InlineData(6, 64, false)]
    [InlineData(6, 45, true)]   // 8-token blocks, then single tokens
    [InlineData(1, 37, true)]
    [InlineData(8, 16, false)]
    [InlineData(4, 9, true)]
    [InlineData(6, 5, true)]
    public void UnpackWritesOrAddsTheSumsInTokenMajorOrder(int rows, int count, bool accumulate)
    {
        const int YStride = 10;
        float[] tile = new float[8 * TokenPanel.Tokens];
        for (int i = 0; i < tile.Length; i++)
            tile[i] = i;
        float[] y = new float[(count + 1) * YStride + 2];
        for (int i = 0; i < y.Length; i++)
            y[i] = -1000 - i;
        float[] before = (float[])y.Clone();

        TokenPanel.Unpack(ref tile[0], rows, ref y[2], YStride, count, accumulate);

        for (int i = 0; i < y.Length; i++)
        {
            int offset = i - 2, t = offset / YStride, r = offset % YStride;
            bool written = offset >= 0 && t < count && r < rows;
            float expected = !written ? before[i] : (accumulate ? before[i] : 0) + tile[r * TokenPanel.Tokens + t];
            Assert.Equal(expected, y[i]);
        }
    }

    [Fact]
    public void PackRejectsAShapeItCannotHold()
    {
        float[] x = new float[64 * 10];
        Assert.Throws<ArgumentException>(() => TokenPanel.Pack(x, 10, 0, 1));            // cols not a multiple of 8
        Assert.Throws<ArgumentException>(() => TokenPanel.Pack(x, 8, 0, 65));            // more than a panel
        Assert.Throws<ArgumentException>(() => TokenPanel.Pack(x, 8, 79, 2));            // past the end of x
        Assert.Throws<ArgumentException>(() => TokenPanel.Unpack(ref x[0], 9, ref x[0], 8, 1, false)); // more rows than a tile
    }
}
