using System;
using System.IO;

namespace Llama.Compiled;

/// <summary>
/// Rewrites a SentencePiece <c>ModelProto</c> so that its normalizer keeps whitespace as written
/// (<c>normalizer_spec.remove_extra_whitespaces = false</c>).
/// </summary>
/// <remarks>
/// Two reasons: llama2.c and llama.cpp, the references this project is checked against, never collapse
/// spaces; and Microsoft.ML.Tokenizers 2.0.1 with the flag set encodes one-character texts such as "I"
/// to no tokens at all (stories260K's tokenizer.model sets it).
/// </remarks>
internal static class SentencePieceModelPatch
{
    private const int NormalizerSpecField = 3;      // ModelProto.normalizer_spec
    private const int RemoveExtraWhitespaces = 4;   // NormalizerSpec.remove_extra_whitespaces, default true

    public static byte[] KeepWhitespace(byte[] model)
    {
        var output = new MemoryStream(model.Length + 8);
        int pos = 0;
        while (pos < model.Length)
        {
            int fieldStart = pos;
            ulong key = ReadVarint(model, ref pos);
            int field = (int)(key >> 3), wireType = (int)(key & 7);
            if (field == NormalizerSpecField && wireType == 2)
            {
                int length = checked((int)ReadVarint(model, ref pos));
                byte[] spec = Rewrite(model.AsSpan(Check(model, pos, length), length));
                WriteVarint(output, key);
                WriteVarint(output, (ulong)spec.Length);
                output.Write(spec);
                pos += length;
            }
            else
            {
                Skip(model, ref pos, wireType);
                output.Write(model, fieldStart, pos - fieldStart);
            }
        }
        return output.ToArray();
    }

    /// <summary>The NormalizerSpec without remove_extra_whitespaces, then the field set to false explicitly.</summary>
    private static byte[] Rewrite(ReadOnlySpan<byte> spec)
    {
        byte[] bytes = spec.ToArray();
        var output = new MemoryStream(bytes.Length + 2);
        int pos = 0;
        while (pos < bytes.Length)
        {
            int fieldStart = pos;
            ulong key = ReadVarint(bytes, ref pos);
            Skip(bytes, ref pos, (int)(key & 7));
            if ((int)(key >> 3) != RemoveExtraWhitespaces)
                output.Write(bytes, fieldStart, pos - fieldStart);
        }
        WriteVarint(output, (ulong)(RemoveExtraWhitespaces << 3)); // varint wire type
        WriteVarint(output, 0);
        return output.ToArray();
    }

    private static void Skip(byte[] data, ref int pos, int wireType)
    {
        switch (wireType)
        {
            case 0: ReadVarint(data, ref pos); break;
            case 1: pos = Check(data, pos, 8) + 8; break;
            case 2:
                int length = checked((int)ReadVarint(data, ref pos));
                pos = Check(data, pos, length) + length;
                break;
            case 5: pos = Check(data, pos, 4) + 4; break;
            default: throw new InvalidDataException($"unsupported protobuf wire type {wireType}");
        }
    }

    private static int Check(byte[] data, int pos, int length) =>
        length >= 0 && length <= data.Length - pos ? pos : throw new InvalidDataException("truncated protobuf field");

    private static ulong ReadVarint(byte[] data, ref int pos)
    {
        ulong value = 0;
        for (int shift = 0; shift < 64; shift += 7)
        {
            if (pos >= data.Length)
                throw new InvalidDataException("truncated protobuf varint");
            byte b = data[pos++];
            value |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80)
                return value;
        }
        throw new InvalidDataException("protobuf varint longer than 10 bytes");
    }

    private static void WriteVarint(Stream stream, ulong value)
    {
        while (value >= 0x80)
        {
            stream.WriteByte((byte)(value | 0x80));
            value >>= 7;
        }
        stream.WriteByte((byte)value);
    }
}
