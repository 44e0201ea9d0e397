//go:build amd64 && !purego

#include "textflag.h"

// CLASSIFY sets R to the 16-bit mask of the bytes at OFF(SI) that are '"'
// (X1), '\\' (X2), or below 0x20 as signed bytes (X3 holds 0x20): control
// characters and every byte >= 0x80.
#define CLASSIFY(OFF, R) \
	MOVOU OFF(SI), X0 \
	MOVO X0, X4 \
	PCMPEQB X1, X4 \
	MOVO X0, X5 \
	PCMPEQB X2, X5 \
	MOVO X3, X6 \
	PCMPGTB X0, X6 \
	POR X5, X4 \
	POR X6, X4 \
	PMOVMSKB X4, R

// func specialMasks(b []byte, masks []uint64)
TEXT ·specialMasks(SB), NOSPLIT, $0-48
	MOVQ b_base+0(FP), SI
	MOVQ masks_base+24(FP), DI
	MOVQ masks_len+32(FP), BX
	MOVQ $0x2222222222222222, DX
	MOVQ DX, X1
	PUNPCKLQDQ X1, X1
	MOVQ $0x5c5c5c5c5c5c5c5c, DX
	MOVQ DX, X2
	PUNPCKLQDQ X2, X2
	MOVQ $0x2020202020202020, DX
	MOVQ DX, X3
	PUNPCKLQDQ X3, X3

loop:
	TESTQ BX, BX
	JZ    done
	CLASSIFY(0, AX)
	CLASSIFY(16, DX)
	SHLQ $16, DX
	ORQ  DX, AX
	CLASSIFY(32, DX)
	SHLQ $32, DX
	ORQ  DX, AX
	CLASSIFY(48, DX)
	SHLQ $48, DX
	ORQ  DX, AX
	MOVQ AX, (DI)
	ADDQ $64, SI
	ADDQ $8, DI
	DECQ BX
	JMP  loop

done:
	RET
