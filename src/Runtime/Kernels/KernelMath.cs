using System;
using System.ComponentModel;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Llama.Compiled.CompilerServices;

/// <summary>
/// Shape-agnostic vector primitives of the forward pass and the sampler (softmax, exp, sums, F16 widening), called by
/// generated kernels. They replace <c>System.Numerics.Tensors.TensorPrimitives</c> on the per-token path because a
/// library method starts in tier-0 code under tiered compilation, and TensorPrimitives' generic operators at tier 0
/// run many times slower than their optimized code: every method here is compiled optimized at its first call
/// (<see cref="MethodImplOptions.AggressiveOptimization"/>) or inlined into a caller that is.
/// </summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public static class KernelMath
{
    private const float ExpUpperBound = 88.37626f; // ln(float.MaxValue): above it e^x is +∞
    private const float ExpLowerBound = -86f;      // below it e^x (< 4.5e-38) is flushed to 0, keeping results normal

    /// <summary>
    /// e^x per lane, within 2 ulp of the exact value: x = n·ln 2 + r with |r| ≤ ln 2 / 2, e^r by Cephes' expf polynomial,
    /// and 2^n put into the exponent bits. Results below e^-86 are 0 (−∞ included); above ln(float.MaxValue), +∞.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    public static Vector256<float> Exp(Vector256<float> x)
    {
        Vector256<float> clamped = Vector256.Min(Vector256.Max(x, Vector256.Create(ExpLowerBound)), Vector256.Create(ExpUpperBound));
        Vector256<float> n = Vector256.Round(clamped * Vector256.Create(1.442695f)); // x·log2(e), to nearest
        // r = x − n·ln 2 with ln 2 in two parts (0.693359375 has few mantissa bits, so n·0.693359375 is exact).
        Vector256<float> r = Vector256.FusedMultiplyAdd(n, Vector256.Create(-0.693359375f), clamped);
        r = Vector256.FusedMultiplyAdd(n, Vector256.Create(2.12194440e-4f), r);
        Vector256<float> p = Vector256.Create(1.9875691500e-4f);
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(1.3981999507e-3f));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(8.3334519073e-3f));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(4.1665795894e-2f));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(1.6666665459e-1f));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(5.0000001201e-1f));
        Vector256<float> er = Vector256.FusedMultiplyAdd(p, r * r, r + Vector256<float>.One);
        // 2^n as 2^(n−1)·2: n reaches 128 at the upper bound, whose exponent field does not exist.
        Vector256<float> scale = ((Vector256.ConvertToInt32(n) + Vector256.Create(126)) << 23).AsSingle();
        Vector256<float> result = er * scale * Vector256.Create(2f);
        result = Vector256.ConditionalSelect(Vector256.LessThan(x, Vector256.Create(ExpLowerBound)), Vector256<float>.Zero, result);
        return Vector256.ConditionalSelect(Vector256.GreaterThan(x, Vector256.Create(ExpUpperBound)), Vector256.Create(float.PositiveInfinity), result);
    }

    /// <summary>e^x as <see cref="Exp(Vector256{float})"/> computes each lane, so a span's tail matches its body.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    public static float Exp(float x) => Exp(Vector256.Create(x)).ToScalar();

    /// <summary>x = softmax(x), in place; the max is subtracted first so that no exponent overflows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Softmax(Span<float> x)
    {
        float sum = SubtractExp(x, Max(x));
        Multiply(x, 1f / sum);
    }

    /// <summary>x[i] = e^(x[i] − <paramref name="subtrahend"/>), in place; returns Σ x[i] after.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float SubtractExp(Span<float> x, float subtrahend)
    {
        ref float x0 = ref MemoryMarshal.GetReference(x);
        nuint length = (nuint)x.Length, i = 0;
        Vector256<float> shift = Vector256.Create(subtrahend), sums = Vector256<float>.Zero;
        for (; i + 8 <= length; i += 8)
        {
            Vector256<float> e = Exp(Vector256.LoadUnsafe(ref x0, i) - shift);
            e.StoreUnsafe(ref x0, i);
            sums += e;
        }
        float sum = Vector256.Sum(sums);
        for (; i < length; i++)
        {
            float e = Exp(Unsafe.Add(ref x0, i) - subtrahend);
            Unsafe.Add(ref x0, i) = e;
            sum += e;
        }
        return sum;
    }

    /// <summary>The largest element (NaN if any is NaN); −∞ for an empty span.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Max(ReadOnlySpan<float> x)
    {
        ref float x0 = ref MemoryMarshal.GetReference(x);
        nuint length = (nuint)x.Length, i = 0;
        float max = float.NegativeInfinity;
        if (length >= 8)
        {
            Vector256<float> maxes = Vector256.Create(float.NegativeInfinity);
            for (; i + 8 <= length; i += 8)
                maxes = Vector256.Max(maxes, Vector256.LoadUnsafe(ref x0, i));
            for (int lane = 0; lane < 8; lane++)
                max = MathF.Max(max, maxes.GetElement(lane));
        }
        for (; i < length; i++)
            max = MathF.Max(max, Unsafe.Add(ref x0, i));
        return max;
    }

    /// <summary>The index of the largest element, the first among equal ones (of the first NaN if any); −1 for an empty span.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static int IndexOfMax(ReadOnlySpan<float> x)
    {
        if (x.IsEmpty)
            return -1;
        float max = Max(x);
        if (float.IsNaN(max))
        {
            for (int i = 0; i < x.Length; i++)
            {
                if (float.IsNaN(x[i]))
                    return i;
            }
        }
        return x.IndexOf(max); // vectorized equality search; +0 and −0 compare equal, as the maximum does
    }

    /// <summary>Σ x[i].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Sum(ReadOnlySpan<float> x)
    {
        ref float x0 = ref MemoryMarshal.GetReference(x);
        nuint length = (nuint)x.Length, i = 0;
        Vector256<float> sums = Vector256<float>.Zero;
        for (; i + 8 <= length; i += 8)
            sums += Vector256.LoadUnsafe(ref x0, i);
        float sum = Vector256.Sum(sums);
        for (; i < length; i++)
            sum += Unsafe.Add(ref x0, i);
        return sum;
    }

    /// <summary>x[i] ·= <paramref name="factor"/>, in place.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Multiply(Span<float> x, float factor)
    {
        ref float x0 = ref MemoryMarshal.GetReference(x);
        nuint length = (nuint)x.Length, i = 0;
        Vector256<float> f = Vector256.Create(factor);
        for (; i + 8 <= length; i += 8)
            (Vector256.LoadUnsafe(ref x0, i) * f).StoreUnsafe(ref x0, i);
        for (; i < length; i++)
            Unsafe.Add(ref x0, i) *= factor;
    }

    /// <summary>x[i] /= <paramref name="divisor"/>, in place (a division, not a multiply by the reciprocal: results are exact quotients).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Divide(Span<float> x, float divisor)
    {
        ref float x0 = ref MemoryMarshal.GetReference(x);
        nuint length = (nuint)x.Length, i = 0;
        Vector256<float> d = Vector256.Create(divisor);
        for (; i + 8 <= length; i += 8)
            (Vector256.LoadUnsafe(ref x0, i) / d).StoreUnsafe(ref x0, i);
        for (; i < length; i++)
            Unsafe.Add(ref x0, i) /= divisor;
    }

    /// <summary>y[i] += x[i] for i &lt; y.Length.</summary>
    /// <exception cref="ArgumentException"><paramref name="x"/> is shorter than <paramref name="y"/>.</exception>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Add(Span<float> y, ReadOnlySpan<float> x)
    {
        if (x.Length < y.Length)
            throw new ArgumentException($"x has {x.Length} elements; y has {y.Length}.", nameof(x));
        ref float y0 = ref MemoryMarshal.GetReference(y);
        ref float x0 = ref MemoryMarshal.GetReference(x);
        nuint length = (nuint)y.Length, i = 0;
        for (; i + 8 <= length; i += 8)
            (Vector256.LoadUnsafe(ref y0, i) + Vector256.LoadUnsafe(ref x0, i)).StoreUnsafe(ref y0, i);
        for (; i < length; i++)
            Unsafe.Add(ref y0, i) += Unsafe.Add(ref x0, i);
    }

    /// <summary>
    /// 8 F16 values as floats, exactly: exponent and mantissa move into float position and a multiply by 2^112 rebiases
    /// the exponent (exact for normal and subnormal values); infinities and NaNs get the float's all-ones exponent.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    public static Vector256<float> HalfToSingle(Vector128<ushort> halves)
    {
        Vector256<int> half = Vector256.WidenLower(halves.ToVector256Unsafe()).AsInt32();
        Vector256<int> magnitudeBits = half & Vector256.Create(0x7FFF);
        Vector256<int> magnitude = ((magnitudeBits << 13).AsSingle() * Vector256.Create(5.192297E+33f)).AsInt32(); // · 2^112
        Vector256<int> special = Vector256.GreaterThanOrEqual(magnitudeBits, Vector256.Create(0x7C00)) & Vector256.Create(0x7F800000);
        return (magnitude | special | (half & Vector256.Create(0x8000)) << 16).AsSingle();
    }

    /// <summary>The 8 F16 values at <paramref name="halves"/> (any alignment) as floats, exactly, as <see cref="HalfToSingle(Vector128{ushort})"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    public static Vector256<float> HalfToSingle8(ref byte halves) => HalfToSingle(Vector128.LoadUnsafe(ref Unsafe.As<byte, ushort>(ref halves)));

    /// <summary>
    /// The F16 value at <paramref name="half"/> (any alignment) as a float, exactly, without a branch: the lane arithmetic
    /// of <see cref="HalfToSingle(Vector128{ushort})"/> on one value.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    public static float HalfToSingle(ref byte half)
    {
        uint bits = Unsafe.ReadUnaligned<ushort>(ref half);
        uint magnitudeBits = bits & 0x7FFF;
        float magnitude = BitConverter.UInt32BitsToSingle(magnitudeBits << 13) * 5.192297E+33f; // · 2^112
        uint special = magnitudeBits >= 0x7C00 ? 0x7F800000u : 0u; // infinities and NaNs: the float's all-ones exponent
        return BitConverter.UInt32BitsToSingle(BitConverter.SingleToUInt32Bits(magnitude) | special | (bits & 0x8000) << 16);
    }

    /// <summary>[Σa, Σb, Σc, Σd]: the lanes of four vectors summed, with one add tree instead of four.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    public static Vector128<float> Sum4(Vector256<float> a, Vector256<float> b, Vector256<float> c, Vector256<float> d)
    {
        if (Avx.IsSupported)
        {
            // hadd(a, b) = [a0+a1, a2+a3, b0+b1, b2+b3 | a4+a5, ...]; twice more gives each vector's four partial sums per half.
            Vector256<float> sums = Avx.HorizontalAdd(Avx.HorizontalAdd(a, b), Avx.HorizontalAdd(c, d));
            return sums.GetLower() + sums.GetUpper();
        }
        return Vector128.Create(Vector256.Sum(a), Vector256.Sum(b), Vector256.Sum(c), Vector256.Sum(d));
    }

    /// <summary>y[i] = (float)x[i] for i &lt; x.Length, exactly (see <see cref="HalfToSingle(Vector128{ushort})"/>).</summary>
    /// <exception cref="ArgumentException"><paramref name="y"/> is shorter than <paramref name="x"/>.</exception>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ConvertToSingle(ReadOnlySpan<Half> x, Span<float> y)
    {
        if (y.Length < x.Length)
            throw new ArgumentException($"y has {y.Length} elements; x has {x.Length}.", nameof(y));
        ref ushort x0 = ref Unsafe.As<Half, ushort>(ref MemoryMarshal.GetReference(x));
        ref float y0 = ref MemoryMarshal.GetReference(y);
        nuint length = (nuint)x.Length, i = 0;
        for (; i + 8 <= length; i += 8)
            HalfToSingle(Vector128.LoadUnsafe(ref x0, i)).StoreUnsafe(ref y0, i);
        for (; i < length; i++)
            Unsafe.Add(ref y0, i) = (float)Unsafe.As<ushort, Half>(ref Unsafe.Add(ref x0, i));
    }
}
