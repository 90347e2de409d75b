using System;
using System.Runtime.InteropServices;
using Llama.Compiled.CompilerServices;
using Llama.Compiled.Tests.Formats;
using Xunit;

namespace Llama.Compiled.Tests.Kernels;

/// <summary>
/// <see cref="Q6KGroups.Unpack"/> against llama.cpp's Q6_K dequantization (<see cref="BlockQuantization.Dequantize"/>):
/// every unpacked weight, scale and d gives back the stored row's values, in the slots the prefill tiles read.
/// <see cref="PrimitiveInstructionSetTests"/> runs this class again with AVX-VNNI, AVX2 and AVX hidden.
/// </summary>
public sealed class Q6KGroupsTests
{
    [Theory]
    [InlineData(16, 3)]
    [InlineData(13, 2)] // a last, partial set of rows: the last row fills the rest
    [InlineData(1, 1)]
    public void UnpackedRowsDequantizeAsTheStoredRows(int rowCount, int superBlocks)
    {
        var random = new Random(rowCount * 31 + superBlocks);
        int rowBytes = superBlocks * BlockQuantization.Q6_KBlockBytes;
        byte[] rows = QuantizedRowsTests.RandomBlocks(WeightFormat.Q6_K, rowCount * superBlocks, random);
        float[] expected = new float[rowCount * superBlocks * 256];
        BlockQuantization.Dequantize(WeightFormat.Q6_K, rows, expected);

        ref byte unpacked = ref Q6KGroups.Unpack(ref rows[0], rowBytes, rowCount, superBlocks);
        ReadOnlySpan<byte> scratch = MemoryMarshal.CreateReadOnlySpan(ref unpacked, superBlocks * Q6KGroups.SuperBlockBytes);
        for (int r = 0; r < Q6KGroups.Rows; r++)
        {
            int row = Math.Min(r, rowCount - 1), group = r / 8, lane = r % 8;
            for (int sb = 0; sb < superBlocks; sb++)
            {
                ReadOnlySpan<byte> block = scratch.Slice(sb * Q6KGroups.SuperBlockBytes, Q6KGroups.SuperBlockBytes);
                float d = MemoryMarshal.Read<float>(block[(Q6KGroups.DAt + 4 * (group * 8 + lane))..]);
                for (int j = 0; j < 16; j++)
                {
                    int scale = MemoryMarshal.Read<int>(block[(Q6KGroups.ScalesAt + 4 * ((j * 2 + group) * 8 + lane))..]);
                    int pair = MemoryMarshal.Read<int>(block[(Q6KGroups.OffsetScalesAt + 4 * ((j / 2 * 2 + group) * 8 + lane))..]);
                    Assert.Equal(-32 * scale, (int)(short)(pair >> 16 * (j % 2)));
                    Assert.Equal((sbyte)rows[row * rowBytes + sb * BlockQuantization.Q6_KBlockBytes + 192 + j], scale);
                    for (int i = 16 * j; i < 16 * j + 16; i++)
                    {
                        int weight = block[Q6KGroups.WeightsAt + group * Q6KGroups.GroupWeightBytes + i / 4 * 32 + lane * 4 + i % 4];
                        Assert.InRange(weight, 0, 63);
                        Assert.Equal(expected[(row * superBlocks + sb) * 256 + i], d * scale * (weight - 32));
                    }
                }
            }
        }
    }

    [Fact]
    public void RejectsRowCountsOutsideOneGroupPair()
    {
        byte[] rows = new byte[17 * BlockQuantization.Q6_KBlockBytes];
        Assert.Throws<ArgumentException>(() => Q6KGroups.Unpack(ref rows[0], BlockQuantization.Q6_KBlockBytes, 17, 1));
        Assert.Throws<ArgumentException>(() => Q6KGroups.Unpack(ref rows[0], BlockQuantization.Q6_KBlockBytes, 0, 1));
    }
}
