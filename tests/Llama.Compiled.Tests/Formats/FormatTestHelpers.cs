using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using System.Text;
using Llama.Compiled.Tools;

namespace Llama.Compiled.Tests.Formats;

/// <summary>A SentencePiece <c>tokenizer.model</c> read with a minimal protobuf reader.</summary>
internal sealed class SentencePieceModel
{
    public List<string> Pieces { get; } = [];
    public List<float> Scores { get; } = [];
    public List<int> Types { get; } = [];
    public int UnkId { get; private set; }
    public int BosId { get; private set; } = 1;
    public int EosId { get; private set; } = 2;

    public static SentencePieceModel Read(string path) => Read(File.ReadAllBytes(path));

    public static SentencePieceModel Read(byte[] bytes)
    {
        var model = new SentencePieceModel();
        foreach ((int field, int wire, ulong value, ReadOnlyMemory<byte> data) in Protobuf.Fields(bytes))
        {
            if (field == 1 && wire == 2)
            {
                string piece = "";
                float score = 0;
                int type = 1;
                foreach ((int f, int w, ulong v, ReadOnlyMemory<byte> d) in Protobuf.Fields(data))
                {
                    if (f == 1) piece = Encoding.UTF8.GetString(d.Span);
                    else if (f == 2 && w == 5) score = BitConverter.UInt32BitsToSingle((uint)v);
                    else if (f == 3) type = (int)v;
                }
                model.Pieces.Add(piece);
                model.Scores.Add(score);
                model.Types.Add(type);
            }
            else if (field == 2 && wire == 2)
            {
                foreach ((int f, _, ulong v, _) in Protobuf.Fields(data))
                {
                    if (f == 40) model.UnkId = (int)v;
                    else if (f == 41) model.BosId = (int)v;
                    else if (f == 42) model.EosId = (int)v;
                }
            }
        }
        return model;
    }

    public GgufVocabulary ToGguf() => new(Pieces, Scores, Types, BosId, EosId, UnkId);

    /// <summary>Writes a GGUF file with only metadata: the vocabulary plus <paramref name="extra"/> keys.</summary>
    public void WriteGguf(string path, params (string Key, object Value)[] extra)
    {
        using var writer = new GgufWriter(path);
        writer.AddString("general.architecture", "llama");
        ToGguf().AddTo(writer);
        foreach ((string key, object value) in extra)
            writer.AddValue(key, value);
        writer.Finish();
    }

    /// <summary>A copy of a serialized ModelProto with one varint field of its normalizer_spec (3) replaced.</summary>
    public static byte[] WithNormalizerField(byte[] model, int field, ulong value)
    {
        var output = new MemoryStream();
        foreach ((int f, int wire, ulong v, ReadOnlyMemory<byte> data) in Protobuf.Fields(model))
        {
            if (f == 3 && wire == 2)
            {
                var spec = new MemoryStream();
                bool replaced = false;
                foreach ((int sf, int sw, ulong sv, ReadOnlyMemory<byte> sd) in Protobuf.Fields(data))
                {
                    if (sf == field)
                    {
                        Protobuf.Write(spec, sf, 0, value, default);
                        replaced = true;
                    }
                    else
                        Protobuf.Write(spec, sf, sw, sv, sd);
                }
                if (!replaced)
                    Protobuf.Write(spec, field, 0, value, default);
                Protobuf.Write(output, f, wire, 0, spec.ToArray());
            }
            else
                Protobuf.Write(output, f, wire, v, data);
        }
        return output.ToArray();
    }
}

/// <summary>Just enough protobuf wire format for the tests.</summary>
internal static class Protobuf
{
    public static IEnumerable<(int Field, int Wire, ulong Value, ReadOnlyMemory<byte> Data)> Fields(ReadOnlyMemory<byte> bytes)
    {
        int pos = 0;
        while (pos < bytes.Length)
        {
            ulong key = Varint(bytes.Span, ref pos);
            int field = (int)(key >> 3), wire = (int)(key & 7);
            switch (wire)
            {
                case 0:
                    yield return (field, wire, Varint(bytes.Span, ref pos), default);
                    break;
                case 1:
                    yield return (field, wire, BinaryPrimitives.ReadUInt64LittleEndian(bytes.Span.Slice(pos)), default);
                    pos += 8;
                    break;
                case 5:
                    yield return (field, wire, BinaryPrimitives.ReadUInt32LittleEndian(bytes.Span.Slice(pos)), default);
                    pos += 4;
                    break;
                case 2:
                    int length = (int)Varint(bytes.Span, ref pos);
                    yield return (field, wire, 0, bytes.Slice(pos, length));
                    pos += length;
                    break;
                default:
                    throw new InvalidDataException($"wire type {wire}");
            }
        }
    }

    public static void Write(Stream s, int field, int wire, ulong value, ReadOnlyMemory<byte> data)
    {
        WriteVarint(s, ((ulong)field << 3) | (uint)wire);
        switch (wire)
        {
            case 0: WriteVarint(s, value); break;
            case 1: Span<byte> b8 = stackalloc byte[8]; BinaryPrimitives.WriteUInt64LittleEndian(b8, value); s.Write(b8); break;
            case 5: Span<byte> b4 = stackalloc byte[4]; BinaryPrimitives.WriteUInt32LittleEndian(b4, (uint)value); s.Write(b4); break;
            case 2: WriteVarint(s, (ulong)data.Length); s.Write(data.Span); break;
        }
    }

    private static ulong Varint(ReadOnlySpan<byte> bytes, ref int pos)
    {
        ulong result = 0;
        for (int shift = 0; ; shift += 7)
        {
            byte b = bytes[pos++];
            result |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80)
                return result;
        }
    }

    private static void WriteVarint(Stream s, ulong value)
    {
        while (value >= 0x80)
        {
            s.WriteByte((byte)(value | 0x80));
            value >>= 7;
        }
        s.WriteByte((byte)value);
    }
}

/// <summary>
/// Walks a GGUF file's header and records where its structural integers are (counts, lengths, types,
/// dimensions, offsets), so tests can make the header lie precisely.
/// </summary>
internal static class GgufLayout
{
    public sealed record Field(string What, int Offset, int Size);

    public static List<Field> Walk(byte[] file, out int headerEnd)
    {
        var fields = new List<Field>();
        int pos = 4;
        fields.Add(new("version", pos, 4)); pos += 4;
        fields.Add(new("tensor count", pos, 8));
        long tensors = BinaryPrimitives.ReadInt64LittleEndian(file.AsSpan(pos)); pos += 8;
        fields.Add(new("kv count", pos, 8));
        long kvs = BinaryPrimitives.ReadInt64LittleEndian(file.AsSpan(pos)); pos += 8;
        for (long i = 0; i < kvs; i++)
        {
            string key = String(file, ref pos, fields, "key length");
            fields.Add(new($"{key} type", pos, 4));
            uint type = BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(pos)); pos += 4;
            Value(file, ref pos, type, fields, key);
        }
        for (long t = 0; t < tensors; t++)
        {
            string name = String(file, ref pos, fields, "tensor name length");
            fields.Add(new($"{name} rank", pos, 4));
            uint rank = BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(pos)); pos += 4;
            for (int d = 0; d < rank; d++)
            {
                fields.Add(new($"{name} dim {d}", pos, 8)); pos += 8;
            }
            fields.Add(new($"{name} type", pos, 4)); pos += 4;
            fields.Add(new($"{name} offset", pos, 8)); pos += 8;
        }
        headerEnd = pos;
        return fields;
    }

    private static string String(byte[] file, ref int pos, List<Field> fields, string what)
    {
        fields.Add(new(what, pos, 8));
        int length = (int)BinaryPrimitives.ReadInt64LittleEndian(file.AsSpan(pos)); pos += 8;
        string s = Encoding.UTF8.GetString(file, pos, length);
        pos += length;
        return s;
    }

    private static void Value(byte[] file, ref int pos, uint type, List<Field> fields, string key)
    {
        switch (type)
        {
            case 0 or 1 or 7: pos += 1; break;
            case 2 or 3: pos += 2; break;
            case 4 or 5 or 6: fields.Add(new($"{key} value", pos, 4)); pos += 4; break;
            case 10 or 11 or 12: fields.Add(new($"{key} value", pos, 8)); pos += 8; break;
            case 8: String(file, ref pos, fields, $"{key} string length"); break;
            case 9:
                fields.Add(new($"{key} element type", pos, 4));
                uint element = BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(pos)); pos += 4;
                fields.Add(new($"{key} count", pos, 8));
                long count = BinaryPrimitives.ReadInt64LittleEndian(file.AsSpan(pos)); pos += 8;
                for (long i = 0; i < count; i++)
                    Value(file, ref pos, element, fields, key);
                break;
            default: throw new InvalidDataException($"type {type}");
        }
    }

    public static int FindField(byte[] file, string what)
    {
        foreach (Field field in Walk(file, out _))
        {
            if (field.What == what)
                return field.Offset;
        }
        throw new KeyNotFoundException(what);
    }
}

internal static class TestData
{
    /// <summary>Deterministic values of varied magnitude, a few exact zeros and ties.</summary>
    public static float[] Random(int count, int seed, float scale = 1f)
    {
        var random = new Random(seed);
        var values = new float[count];
        for (int i = 0; i < count; i++)
            values[i] = (float)((random.NextDouble() * 2 - 1) * scale * Math.Pow(10, random.Next(-2, 2)));
        if (count > 3)
            values[count / 3] = 0f;
        return values;
    }
}
